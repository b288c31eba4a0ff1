"""Reconcile: each running clock's schedule in NATS says what Postgres says, or it is armed again.

Postgres holds every clock's truth; the CLOCKS stream should hold, per running clock, the schedule
its last move armed (same generation, same time). It goes missing if NATS lost it, and goes stale if
a schedule of an older generation overwrote it. Both are found by comparing bytes: the schedule each
pending clock should have (`schedule_parts`), hashed, against what the stream holds.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import UUID

import asyncpg
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.escalation import store
from services.escalation.timers import REARMED, schedule_parts, timer_for
from shared import subjects, telemetry
from shared.db import write_outbox
from shared.ids import utcnow, uuid7
from shared.pull import PullBatches
from shared.runtime import ServiceRuntime

log = structlog.get_logger("escalation")
PAGE = 5000
PREFIX = f"{subjects.CLOCK_TIMER}."
OUTBOX_WAIT_S = 30.0  # how long a run waits for the relay to publish what was armed before it


def _key(body: bytes, at: str) -> int:
    return hash((body, at))


class Reconciler:
    """Runs reconcile at start and then periodically, never overlapping itself."""

    def __init__(self, every_s: float, grace_s: float):
        self.every_s = every_s
        self.grace = timedelta(seconds=grace_s)
        self.next_at = 0.0

    async def at_start(self, runtime: ServiceRuntime) -> None:
        """Before the consumers start: every lost schedule is armed again, overdue ones fire at once
        (no grace: a firing handed to a process that died comes back only after the ack wait)."""
        await self._run(runtime, timedelta(0))

    async def periodically(self, runtime: ServiceRuntime) -> None:
        """While clocks arm and fire; a missing schedule whose time passed less than the grace ago
        is left alone (its firing is on its way)."""
        if time.monotonic() >= self.next_at:
            await self._run(runtime, self.grace)

    async def _run(self, runtime: ServiceRuntime, grace: timedelta) -> None:
        started = time.monotonic()
        try:
            await reconcile(runtime, grace)
        finally:
            took = time.monotonic() - started
            # the run right after start is skipped; with a million clocks a run takes seconds, and
            # the next one then waits nine times as long, so reconcile stays under a tenth of the time
            self.next_at = time.monotonic() + max(self.every_s / 2, 9 * took)


async def reconcile(runtime: ServiceRuntime, grace: timedelta = timedelta(0)) -> Counter:
    """Arm again every running clock whose schedule is missing or stale; returns the count by reason.

    1. The schedule each running clock should have, read from Postgres a page at a time, hashed.
    2. Wait until the relay has published every outbox row written before that read, so a schedule
       merely on its way is not taken for lost.
    3. Read the stream's schedules (the last message of each clock.timer subject), crossing off those
       Postgres expects; what is left is missing or stale.
    4. Only if anything is left: page through the clocks again; one whose schedule hashes to a key
       left over is unchanged since step 1. Such clocks are locked (a clock a handler holds is
       skipped: its mover arms it), checked again at the same generation and time, and armed again
       in the same transaction, so a concurrent move can neither be overwritten nor race ahead of it.

    Re-arming replaces the clock's schedule (one message per subject) and keeps its generation, so a
    firing already on its way is not doubled: whichever comes first advances the generation and the
    other is stale. A missing schedule whose time fell within `grace` has most likely just fired.
    """
    pool, lead, started = runtime.pool, runtime.settings.timer_lead, time.monotonic()
    expected: set[int] = set()
    pending = 0
    async for page in _pending(pool):
        pending += len(page)
        expected.update(_key(*schedule_parts(str(r["id"]), r["generation"], r["fire_at"], lead)) for r in page)
    await _published(runtime)
    telemetry.CLOCKS_PENDING.labels("escalation").set(pending)
    others: set[int] = set()  # schedules Postgres does not expect: stale ones, and those of stopped clocks
    scheduled = 0
    async for m in _schedules(runtime):
        scheduled += 1
        key = _key(m.data, (m.headers or {}).get("Nats-Schedule", ""))
        if key in expected:
            expected.discard(key)
        else:
            others.add(hash(m.subject[len(PREFIX):]))
    rearmed: Counter = Counter()
    examples: list[str] = []
    if expected:
        tag, now = f"-r{uuid7().hex[:12]}", utcnow()
        async for page in _pending(pool):
            lost, reasons = [], {}
            for r in page:
                clock_id = str(r["id"])
                key = _key(*schedule_parts(clock_id, r["generation"], r["fire_at"], lead))
                if key not in expected:
                    continue
                expected.discard(key)
                reason = "stale" if hash(clock_id) in others else "missing"
                at = r["fire_at"] - lead
                if reason == "missing" and now - grace < at <= now:
                    continue
                lost.append(r)
                reasons[r["id"]] = reason
            if lost:
                rearmed.update(await _rearm(runtime, lost, reasons, tag))
                examples += [str(r["id"]) for r in lost[: 5 - len(examples)]]
            if not expected:
                break
    for reason, n in rearmed.items():
        REARMED.labels(reason).inc(n)
    (log.warning if rearmed else log.info)(
        "clocks.reconciled", pending=pending, scheduled=scheduled, rearmed=dict(rearmed), examples=examples or None,
        ms=round((time.monotonic() - started) * 1e3),
    )
    return rearmed


async def _pending(pool: asyncpg.Pool) -> AsyncIterator[list[asyncpg.Record]]:
    after: UUID | None = None
    while page := await store.pending_schedules(pool, after, PAGE):
        yield page
        after = page[-1]["id"]


async def _published(runtime: ServiceRuntime) -> None:
    """Wait until no outbox row older than now is left (the relay deletes what it has published)."""
    pool = runtime.pool
    mark = await pool.fetchval("SELECT coalesce(max(seq), 0) FROM outbox")
    deadline = time.monotonic() + OUTBOX_WAIT_S
    while await pool.fetchval("SELECT EXISTS (SELECT 1 FROM outbox WHERE seq <= $1)", mark):
        if time.monotonic() > deadline:
            # go on: those rows' clocks are armed twice, which is harmless; waiting forever is not
            log.warning("clocks.reconcile_outbox_behind", waited_s=OUTBOX_WAIT_S)
            return
        await asyncio.sleep(0.1)


async def _schedules(runtime: ServiceRuntime) -> AsyncIterator[Msg]:
    """The stream's schedules, one per clock (the last on each clock.timer subject), through a
    short-lived consumer read in large batches."""
    js = runtime.nc.jetstream()
    info = await js.add_consumer(subjects.CLOCKS_STREAM, ConsumerConfig(
        name=f"escalation-reconcile-{uuid7().hex}", deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        filter_subject=f"{PREFIX}>", ack_policy=AckPolicy.NONE, inactive_threshold=60.0, mem_storage=True,
    ))
    left = info.num_pending or 0
    pull = PullBatches(runtime.nc, subjects.CLOCKS_STREAM, info.name, batch=PAGE)
    await pull.start()
    try:
        while left > 0:
            msgs = await pull.next_batch()
            if not msgs:  # what was counted has gone since (fired)
                break
            for m in msgs:
                yield m
            left = msgs[-1].metadata.num_pending
    finally:
        await pull.stop()
        try:
            await js.delete_consumer(subjects.CLOCKS_STREAM, info.name)
        except Exception as exc:  # it goes by itself once inactive
            log.info("clocks.reconcile_consumer_left", error=repr(exc))


async def _rearm(runtime: ServiceRuntime, seen: list[asyncpg.Record], reasons: dict[UUID, str], tag: str) -> Counter:
    """Arm again, in one transaction, those of `seen` still at the generation and time they were read at."""
    lead = runtime.settings.timer_lead
    async with runtime.pool.acquire() as conn, conn.transaction():
        locked = await store.lock_unchanged(conn, seen)
        queued = await write_outbox(
            conn, [timer_for(str(r["id"]), r["generation"], r["fire_at"], tag, lead) for r in locked])
    runtime.relay.handoff(queued)
    return Counter(reasons[r["id"]] for r in locked)
