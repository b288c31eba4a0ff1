"""Under load the front door and the clocks go first: intake, the gateway and escalation at full CPU
priority; routing and response below them; the ledger (a read model) last. Postgres backends too."""

from __future__ import annotations

import asyncio
import os

import asyncpg

from shared.priority import autogroup_nice
from tests.e2e.conftest import System


async def _backends(system: System) -> dict[str, set[int]]:
    conn = await asyncpg.connect(host=str(system.home / "pg"), user="postgres", database="postgres")
    try:
        rows = await conn.fetch("SELECT application_name AS app, pid FROM pg_stat_activity"
                                " WHERE application_name LIKE 'whistle-%'")
    finally:
        await conn.close()
    out: dict[str, set[int]] = {}
    for r in rows:
        out.setdefault(r["app"].removeprefix("whistle-"), set()).add(r["pid"])
    return out


def test_the_front_door_goes_first_and_the_read_model_last(system: System) -> None:
    pids = system.pids()
    expected = {"ledger": 10, "response": 5, "intake": 0, "routing": 5, "escalation": 0, "gateway": 0}
    assert {name: os.getpriority(os.PRIO_PROCESS, pids[name]) for name in expected} == expected
    if autogroup_nice(pids["ledger"]) is not None:  # the kernel shares the CPU by autogroup first
        assert {name: autogroup_nice(pids[name]) for name in expected} == expected
    backends = asyncio.run(_backends(system))
    for name in ("ledger", "response", "intake", "escalation"):
        assert backends.get(name), f"{name} has no Postgres connection"
        assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in backends[name]} == {expected[name]}, name
        assert {autogroup_nice(pid) for pid in backends[name]} <= {None, expected[name]}, name
