"""Escalation's composition root."""

from __future__ import annotations

from pathlib import Path

from services.escalation import store
from services.escalation.handlers import EscalationHandlers
from services.escalation.policy import load_policies
from services.escalation.reconcile import Reconciler
from services.escalation.settings import EscalationSettings
from services.escalation.timers import parse_due
from shared import subjects, telemetry
from shared.contracts import EscalationRaised, SlaBreached, SlaRescheduled, SlaStarted, SlaWarned, SummonsIssued
from shared.runtime import Consumer, Request, ServiceRuntime, Timed


async def count_pending_clocks(runtime: ServiceRuntime) -> None:
    telemetry.CLOCKS_PENDING.labels("escalation").set(await store.count_pending(runtime.pool))


def build(settings: EscalationSettings | None = None) -> ServiceRuntime:
    settings = settings or EscalationSettings()
    runtime = ServiceRuntime("escalation", settings, Path(__file__).with_name("migrations"))
    handlers = EscalationHandlers(load_policies(settings.policy_file), settings.timer_lead)
    # one consumer for every summons event keeps each summons' events in order
    # a summons.issued needs no inbox row: its clocks are started only for a summons that has none
    # batches of new summons only overlap (nothing earlier can touch a new summons' clocks)
    runtime.consume(Consumer("summons.>", handlers.on_summons_events, durable="escalation-summons", batch=True,
                             dedup=lambda e: None if isinstance(e, SummonsIssued) else e.event_id,
                             overlaps=lambda e: isinstance(e, SummonsIssued), concurrency=settings.issued_in_flight))
    runtime.consume(Consumer(
        # firings need no order (each locks its clock and checks the generation): two loops overlap
        f"{subjects.CLOCK_DUE}.*", handlers.on_clocks_due, stream=subjects.CLOCKS_STREAM, batch=True, concurrency=2,
        durable="escalation-clock-due", parse=parse_due, dedup=lambda _: None,
        timed=Timed(lambda due: due.due_at, handlers.prepare_dues),
    ))
    runtime.serve(Request(subjects.QRY_ESCALATION_POLICIES, handlers.policies_query, query=True))
    reconciler = Reconciler(settings.reconcile_every_s, settings.reconcile_grace_s)
    runtime.on_startup(reconciler.at_start)  # before the consumers start
    runtime.every(settings.reconcile_every_s, reconciler.periodically)
    runtime.every(15.0, count_pending_clocks)
    runtime.documents(SlaStarted, SlaRescheduled, SlaWarned, SlaBreached, EscalationRaised)
    return runtime
