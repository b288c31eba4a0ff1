"""Escalation's composition root."""

from __future__ import annotations

from pathlib import Path

import structlog

from services.escalation import store
from services.escalation.handlers import EscalationHandlers
from services.escalation.policy import load_policies
from services.escalation.settings import EscalationSettings
from services.escalation.timers import parse_due, timer_message
from shared import subjects, telemetry
from shared.contracts import EscalationRaised, SlaBreached, SlaRescheduled, SlaStarted, SlaWarned
from shared.db import write_outbox
from shared.ids import uuid7
from shared.runtime import ServiceRuntime

log = structlog.get_logger("escalation")


async def reconcile(runtime: ServiceRuntime) -> None:
    """Re-arm every pending clock from Postgres, so a lost schedule cannot lose a deadline.

    Re-arming replaces the clock's schedule (one message per subject), so it never doubles one;
    an overdue clock fires at once. The generation is unchanged, so a firing already on its way
    is not doubled either: whichever arrives first advances the generation, the other is stale.
    Runs before the consumers start.
    """
    clocks = await store.pending_clocks(runtime.pool)
    boot = f"-r{uuid7().hex[:12]}"
    for start in range(0, len(clocks), 5000):
        async with runtime.pool.acquire() as conn, conn.transaction():
            await write_outbox(conn, [timer_message(c, boot) for c in clocks[start:start + 5000]])
    telemetry.CLOCKS_PENDING.labels("escalation").set(len(clocks))
    log.info("clocks.reconciled", rearmed=len(clocks))


async def count_pending_clocks(runtime: ServiceRuntime) -> None:
    telemetry.CLOCKS_PENDING.labels("escalation").set(await store.count_pending(runtime.pool))


def build(settings: EscalationSettings | None = None) -> ServiceRuntime:
    settings = settings or EscalationSettings()
    runtime = ServiceRuntime("escalation", settings, Path(__file__).with_name("migrations"))
    handlers = EscalationHandlers(load_policies(settings.policy_file))
    # one consumer for every summons event keeps each summons' events in order
    runtime.on_events("summons.>", handlers.on_summons_events, durable="escalation-summons", batch=True)
    runtime.on_events(
        # firings need no order (each locks its clock and checks the generation): two loops overlap
        f"{subjects.CLOCK_DUE}.*", handlers.on_clocks_due, stream=subjects.CLOCKS_STREAM, batch=True, concurrency=2,
        durable="escalation-clock-due", parse=parse_due, dedup=lambda _: None,
    )
    runtime.on_request(subjects.QRY_ESCALATION_POLICIES, handlers.policies_query, query=True)
    runtime.on_startup(reconcile)
    runtime.every(15.0, count_pending_clocks)
    runtime.documents(SlaStarted, SlaRescheduled, SlaWarned, SlaBreached, EscalationRaised)
    return runtime
