"""Escalation's composition root."""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from services.escalation import store
from services.escalation.handlers import EscalationHandlers
from services.escalation.policy import load_policies
from services.escalation.settings import EscalationSettings
from services.escalation.timers import parse_due, timer_message
from shared import subjects, telemetry
from shared.contracts import EscalationRaised, SlaBreached, SlaRescheduled, SlaStarted, SlaWarned, SummonsIssued
from shared.db import write_outbox
from shared.ids import utcnow, uuid7
from shared.runtime import ServiceRuntime

log = structlog.get_logger("escalation")


async def scheduled_clock_ids(runtime: ServiceRuntime) -> set[str]:
    """The ids of the clocks whose schedule the CLOCKS stream holds (clock.timer.<id>), read from
    the stream's per-subject counts, a page (the server's limit, 100,000) at a time."""
    prefix = f"{subjects.CLOCK_TIMER}."
    ids: set[str] = set()
    while True:
        reply = await runtime.nc.request(
            f"$JS.API.STREAM.INFO.{subjects.CLOCKS_STREAM}",
            json.dumps({"subjects_filter": f"{prefix}>", "offset": len(ids)}).encode(), timeout=30,
        )
        info = json.loads(reply.data)
        if "error" in info:
            raise RuntimeError(f"CLOCKS stream info: {info['error']}")
        page = (info.get("state") or {}).get("subjects") or {}
        ids.update(subject[len(prefix):] for subject in page)
        if not page or len(ids) >= info.get("total", 0):
            return ids


async def reconcile(runtime: ServiceRuntime) -> None:
    """Re-arm every running clock whose schedule is missing, so a lost schedule cannot lose a deadline.

    Postgres holds the truth; the CLOCKS stream should hold one schedule per running clock (the
    outbox writes it in the clock's own transaction, so it goes missing only if NATS lost it).
    Clocks are read a page at a time, and a page's re-arms go out in one transaction. A clock past
    its firing time is re-armed too, so it fires at once if its firing was lost. Re-arming replaces
    the clock's schedule (one message per subject), so it never doubles one; the generation is
    unchanged, so a firing already on its way is not doubled either: whichever arrives first
    advances the generation, the other is stale. Runs before the consumers start.
    """
    scheduled = await scheduled_clock_ids(runtime)
    boot = f"-r{uuid7().hex[:12]}"
    pending = rearmed = 0
    after = None
    while True:
        clocks = await store.pending_clocks(runtime.pool, after, 5000)
        if not clocks:
            break
        after, pending = clocks[-1].id, pending + len(clocks)
        now = utcnow()
        lost = [c for c in clocks if str(c.id) not in scheduled or c.fire_at <= now]
        if lost:
            async with runtime.pool.acquire() as conn, conn.transaction():
                await write_outbox(conn, [timer_message(c, boot, runtime.settings.timer_lead) for c in lost])
            rearmed += len(lost)
    telemetry.CLOCKS_PENDING.labels("escalation").set(pending)
    log.info("clocks.reconciled", pending=pending, scheduled=len(scheduled), rearmed=rearmed)


async def count_pending_clocks(runtime: ServiceRuntime) -> None:
    telemetry.CLOCKS_PENDING.labels("escalation").set(await store.count_pending(runtime.pool))


def build(settings: EscalationSettings | None = None) -> ServiceRuntime:
    settings = settings or EscalationSettings()
    runtime = ServiceRuntime("escalation", settings, Path(__file__).with_name("migrations"))
    handlers = EscalationHandlers(load_policies(settings.policy_file), settings.timer_lead)
    # one consumer for every summons event keeps each summons' events in order
    # a summons.issued needs no inbox row: its clocks are started only for a summons that has none
    # batches of new summons only overlap (nothing earlier can touch a new summons' clocks)
    runtime.on_events("summons.>", handlers.on_summons_events, durable="escalation-summons", batch=True,
                      dedup=lambda e: None if isinstance(e, SummonsIssued) else e.event_id,
                      overlaps=lambda e: isinstance(e, SummonsIssued), concurrency=settings.issued_in_flight)
    runtime.on_events(
        # firings need no order (each locks its clock and checks the generation): two loops overlap
        f"{subjects.CLOCK_DUE}.*", handlers.on_clocks_due, stream=subjects.CLOCKS_STREAM, batch=True, concurrency=2,
        durable="escalation-clock-due", parse=parse_due, dedup=lambda _: None,
        not_before=lambda due: due.due_at, prepare=handlers.prepare_dues,
    )
    runtime.on_request(subjects.QRY_ESCALATION_POLICIES, handlers.policies_query, query=True)
    runtime.on_startup(reconcile)
    runtime.every(15.0, count_pending_clocks)
    runtime.documents(SlaStarted, SlaRescheduled, SlaWarned, SlaBreached, EscalationRaised)
    return runtime
