"""A running escalation (not restarted) finds the clocks whose schedule NATS lost or holds stale, and
arms them again: each still fires once, at its time. The fixture runs reconcile every 2 s."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import nats
from nats.js.errors import NotFoundError

from tests.e2e.conftest import System, wait_for

SLA = ("sla.breached", "escalation.raised")


async def _js(system: System, work):
    nc = await nats.connect(system.nats_url)
    try:
        return await work(nc.jetstream())
    finally:
        await nc.close()


def _report_clock(system: System, whistle_id: str) -> dict | None:
    """The whistle's report clock as escalation stores it (id, generation, fire_at), once started."""
    async def read() -> dict | None:
        conn = await asyncpg.connect(host=str(system.home / "pg"), user="postgres", database="postgres")
        try:
            row = await conn.fetchrow("SELECT id::text AS id, generation, fire_at FROM escalation.clocks"
                                      " WHERE whistle_id = $1::uuid AND kind = 'report'", whistle_id)
            return dict(row) if row else None
        finally:
            await conn.close()
    return asyncio.run(read())


def _schedule(system: System, clock_id: str) -> dict | None:
    """The clock's schedule in the CLOCKS stream: stream seq, body and its @at, or None."""
    async def read(js) -> dict | None:
        try:
            m = await js.get_last_msg("CLOCKS", f"clock.timer.{clock_id}")
        except NotFoundError:
            return None
        return {"seq": m.seq, "body": json.loads(m.data), "at": (m.headers or {}).get("Nats-Schedule")}
    return asyncio.run(_js(system, read))


def _purge(system: System, clock_id: str) -> None:
    asyncio.run(_js(system, lambda js: js.purge_stream("CLOCKS", subject=f"clock.timer.{clock_id}")))


def _rearmed(system: System, reason: str) -> float:
    text = httpx.get(f"{system.telemetry_url('escalation')}/metrics", timeout=5).text
    found = re.search(rf'^whistle_clocks_rearmed_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _armed_clock(system: System) -> tuple[str, dict, dict]:
    """A whistle whose report clock (15 s, no warning, one ladder step) is armed in NATS."""
    whistle_id = system.blow(category="elderly_care", location={"building": "9"})
    clock = wait_for(lambda: _report_clock(system, whistle_id), timeout=20, what="report clock")
    schedule = wait_for(lambda: (s := _schedule(system, clock["id"])) and s["body"]["generation"] == clock["generation"]
                        and s, timeout=20, what="schedule armed")
    assert clock["fire_at"] - datetime.now(UTC) > timedelta(seconds=8), "too slow to test before the deadline"
    return whistle_id, clock, schedule


def _rearmed_as_before(system: System, clock: dict, before: dict) -> dict:
    """The clock's schedule stored again after `before` (a later stream seq), as Postgres says."""
    again = wait_for(lambda: (s := _schedule(system, clock["id"])) and s["seq"] > before["seq"] and s,
                     timeout=10, interval=0.2, what="schedule armed again")
    assert again["body"] == before["body"] and again["at"] == before["at"]
    return again


def _fires_once_on_time(system: System, whistle_id: str, clock: dict) -> None:
    def sla() -> list[dict]:
        return [t for t in system.whistle(whistle_id)["timeline"] if t["type"] in SLA]

    wait_for(lambda: len(sla()) >= 2, timeout=30, interval=0.5, what="the clock fired")
    time.sleep(3)  # a second firing would land by now
    events = sla()
    assert sorted(e["type"] for e in events) == ["escalation.raised", "sla.breached"], events
    assert all(datetime.fromisoformat(e["at"]) >= clock["fire_at"] for e in events), "fired early"


def test_a_schedule_lost_from_nats_is_rearmed_by_the_periodic_reconcile(system: System) -> None:
    whistle_id, clock, schedule = _armed_clock(system)
    before = _rearmed(system, "missing")
    _purge(system, clock["id"])
    _rearmed_as_before(system, clock, schedule)
    assert _rearmed(system, "missing") >= before + 1
    _fires_once_on_time(system, whistle_id, clock)


def test_a_schedule_overwritten_by_an_older_generation_is_rearmed_by_the_periodic_reconcile(system: System) -> None:
    """As if the relay had published an older schedule after the current one: same subject, so it
    replaces it; it would fire in an hour, with a generation the clock no longer has."""
    whistle_id, clock, schedule = _armed_clock(system)
    before = _rearmed(system, "stale")
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {"clock_id": clock["id"], "generation": clock["generation"] - 1, "due_at": later}

    async def overwrite(js) -> int:
        ack = await js.publish(f"clock.timer.{clock['id']}", json.dumps(body).encode(), headers={
            "Nats-Schedule": f"@at {later}", "Nats-Schedule-Target": f"clock.due.{clock['id']}"})
        return ack.seq

    stale_seq = asyncio.run(_js(system, overwrite))
    _rearmed_as_before(system, clock, {**schedule, "seq": stale_seq})
    assert _rearmed(system, "stale") >= before + 1
    _fires_once_on_time(system, whistle_id, clock)


def test_a_firing_of_an_older_generation_rearms_the_clock_still_running(system: System) -> None:
    """The older schedule fired in place of the current one (gone from NATS): the stale firing is not
    only dropped, it arms the clock's current schedule again."""
    whistle_id, clock, schedule = _armed_clock(system)
    before = _rearmed(system, "stale_firing")
    _purge(system, clock["id"])
    firing = {"clock_id": clock["id"], "generation": clock["generation"] - 1}
    asyncio.run(_js(system, lambda js: js.publish(f"clock.due.{clock['id']}", json.dumps(firing).encode())))
    wait_for(lambda: _rearmed(system, "stale_firing") >= before + 1, timeout=10, interval=0.2,
             what="the stale firing re-armed the clock")
    _rearmed_as_before(system, clock, schedule)
    _fires_once_on_time(system, whistle_id, clock)
