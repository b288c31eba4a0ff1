"""Escalation's handlers: clocks follow the summons' events; timer firings climb the ladder."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import structlog

from services.escalation import domain, store
from services.escalation.calendar import WallClock
from services.escalation.policy import Policies
from services.escalation.timers import ClockDue, timer_message
from shared import telemetry
from shared.contracts import (
    Command,
    EscalationRaised,
    Event,
    ExtensionGranted,
    ExtensionRefused,
    ExtensionRequested,
    Reply,
    SlaBreached,
    SlaRescheduled,
    SlaStarted,
    SlaWarned,
    SummonsIssued,
    SummonsPaused,
    SummonsResumed,
)

log = structlog.get_logger("escalation")


class EscalationHandlers:
    def __init__(self, policies: Policies):
        self.policies = policies
        self.clockworks: dict[str, domain.Clockwork] = {"wall": WallClock(), "working": policies.calendar.build()}

    def _cw(self, clock: domain.Clock) -> domain.Clockwork:
        return self.clockworks[clock.basis]

    async def on_summons_event(self, conn: asyncpg.Connection, event: Event, now: datetime) -> list:
        """Start, stop, pause, resume or extend the summons' clocks; arm what is pending."""
        if isinstance(event, SummonsIssued):
            return await self._start(conn, event)
        clocks = await store.lock_summons_clocks(conn, event.summons_id)
        changed = [self._apply(c, event, now) for c in clocks]
        changed = [(old, new) for old, new in zip(clocks, changed, strict=True) if new is not old]
        await store.save(conn, [new for _, new in changed])
        out: list = [timer_message(new) for _, new in changed if new.pending]
        for old, new in changed:
            if new.state in ("paused", "running") and new.deadline != old.deadline:
                out.append(SlaRescheduled(
                    occurred_at=now, whistle_id=new.whistle_id, summons_id=new.summons_id, clock=new.kind,
                    deadline=new.deadline, causation_id=event.event_id, actor="system:escalation",
                    reason=event.subject,
                ))
        return out

    def _apply(self, clock: domain.Clock, event: Event, now: datetime) -> domain.Clock:
        cw = self._cw(clock)
        if event.subject in domain.ENDS_ALL or domain.STOPPED_BY.get(event.subject) == clock.kind:
            return domain.stop(clock)
        if isinstance(event, (SummonsPaused, ExtensionRequested)):
            return domain.pause(clock, now, cw)
        if isinstance(event, (SummonsResumed, ExtensionRefused)):
            return domain.resume(clock, now, cw)
        if isinstance(event, ExtensionGranted):
            if clock.kind == event.clock:
                return domain.extend(clock, event.new_deadline, now, cw)
            return domain.resume(clock, now, cw)
        return clock

    async def _start(self, conn: asyncpg.Connection, event: SummonsIssued) -> list:
        policy = self.policies.for_summons(event.tier, event.category)
        clocks = domain.start_clocks(event, policy, self.clockworks[policy.basis])
        if not await store.insert_clocks(conn, clocks):
            return []
        started = SlaStarted(
            occurred_at=event.occurred_at, whistle_id=event.whistle_id, summons_id=event.summons_id,
            responder_id=event.responder_id, basis=policy.basis, causation_id=event.event_id,
            actor="system:escalation", deadlines={c.kind: c.deadline for c in clocks},
        )
        return [started, *(timer_message(c) for c in clocks)]

    async def on_clock_due(self, conn: asyncpg.Connection, due: ClockDue, now: datetime) -> list:
        """A timer fired: warn, breach, climb the ladder — or drop it if its generation is stale."""
        clock = await store.lock_clock(conn, due.clock_id)
        if clock is None:
            log.warning("clock.unknown", clock_id=str(due.clock_id))
            return []
        updated, events = domain.fire(clock, due.generation, now, self._cw(clock))
        if updated is clock:
            telemetry.HANDLED.labels("escalation", "clock.due", "stale").inc()
            return []
        await store.save(conn, [updated])
        for e in events:
            if isinstance(e, SlaWarned):
                telemetry.SLA_WARNINGS.labels(clock.tier, clock.department).inc()
            elif isinstance(e, SlaBreached):
                telemetry.SLA_BREACHES.labels(clock.tier, clock.department).inc()
            elif isinstance(e, EscalationRaised):
                telemetry.ESCALATIONS.labels(e.level, clock.department).inc()
        return [*events, timer_message(updated)] if updated.pending else events

    async def policies_query(self, pool: asyncpg.Pool, cmd: Command) -> Reply:  # noqa: ARG002
        """The SLA policies in force."""
        return Reply.success(self.policies.model_dump(mode="json"))
