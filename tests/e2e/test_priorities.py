"""Under load the front door and the clocks go first: intake, the gateway and escalation at full CPU
priority; routing and response below them; the ledger (a read model) last. Postgres backends too."""

from __future__ import annotations

import asyncio
import os

import asyncpg

from shared.priority import autogroup_nice
from tests.e2e.conftest import System, wait_for


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
    # a pool may be opening a connection (its backend not yet reniced) or closing an idle one (gone
    # before it is read) at the moment of the query: ask again until a settled view, not forever
    wait_for(lambda: _backend_priorities(system, expected), timeout=20, what="Postgres backend priorities")


def _backend_priorities(system: System, expected: dict[str, int]) -> bool:
    backends = asyncio.run(_backends(system))
    for name in ("ledger", "response", "intake", "escalation"):
        assert backends.get(name), f"{name} has no Postgres connection"
        try:
            nices = {os.getpriority(os.PRIO_PROCESS, pid) for pid in backends[name]}
            groups = {autogroup_nice(pid) for pid in backends[name]}
        except ProcessLookupError:
            return False
        if nices != {expected[name]} or not groups <= {None, expected[name]}:
            return False
    return True
