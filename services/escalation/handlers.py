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

    async def on_summons_events(self, conn: asyncpg.Connection, events: list[Event], now: datetime) -> list:
        """Start, stop, pause, resume or extend the summons' clocks; arm what is pending.

        A batch at a time, set-based: the new summons' clocks in one insert, then every other
        event applied in stream order to its summons' clocks (locked together), saved in one
        update. A summons is issued before anything else happens to it, so starting first keeps
        each summons' order.
        """
        out, new_clocks = await self._start(conn, [e for e in events if isinstance(e, SummonsIssued)])
        await store.insert(conn, new_clocks)
        moves = [e for e in events if not isinstance(e, SummonsIssued)]
        if not moves:
            return out
        by_summons = await store.lock_summons_clocks(conn, list({e.summons_id for e in moves}))
        before = {c.id: c for clocks in by_summons.values() for c in clocks}
        for event in moves:
            clocks = by_summons.get(event.summons_id, [])
            after = [self._apply(c, event, now) for c in clocks]
            for old, new in zip(clocks, after, strict=True):
                if new is not old and new.state in ("paused", "running") and new.deadline != old.deadline:
                    out.append(SlaRescheduled(
                        occurred_at=now, whistle_id=new.whistle_id, summons_id=new.summons_id, clock=new.kind,
                        deadline=new.deadline, causation_id=event.event_id, actor="system:escalation",
                        reason=event.subject,
                    ))
            by_summons[event.summons_id] = after
        changed = [c for clocks in by_summons.values() for c in clocks if c is not before[c.id]]
        await store.save(conn, changed)
        return out + [timer_message(c) for c in changed if c.pending]

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

    async def _start(self, conn: asyncpg.Connection, issued: list[SummonsIssued]) -> tuple[list, list[domain.Clock]]:
        """Clocks for the summons that have none yet, with their sla.started and timers."""
        out: list = []
        new_clocks: list[domain.Clock] = []
        if not issued:
            return out, new_clocks
        seen = await store.summons_with_clocks(conn, [e.summons_id for e in issued])
        for event in issued:
            if event.summons_id in seen:
                continue
            seen.add(event.summons_id)
            policy = self.policies.for_summons(event.tier, event.category)
            clocks = domain.start_clocks(event, policy, self.clockworks[policy.basis])
            if not clocks:
                continue
            out.append(SlaStarted(
                occurred_at=event.occurred_at, whistle_id=event.whistle_id, summons_id=event.summons_id,
                responder_id=event.responder_id, basis=policy.basis, causation_id=event.event_id,
                actor="system:escalation", deadlines={c.kind: c.deadline for c in clocks},
            ))
            out += [timer_message(c) for c in clocks]
            new_clocks += clocks
        return out, new_clocks

    async def on_clocks_due(self, conn: asyncpg.Connection, dues: list[ClockDue], now: datetime) -> list:
        """Timers fired: warn, breach, climb the ladder — or drop a firing whose generation is stale."""
        clocks = await store.lock_clocks(conn, list({d.clock_id for d in dues}))
        before = dict(clocks)
        out: list = []
        for due in dues:
            clock = clocks.get(due.clock_id)
            if clock is None:
                log.warning("clock.unknown", clock_id=str(due.clock_id))
                continue
            updated, events = domain.fire(clock, due.generation, now, self._cw(clock))
            if updated is clock:
                telemetry.HANDLED.labels("escalation", "clock.due", "stale").inc()
                continue
            clocks[due.clock_id] = updated
            for e in events:
                if isinstance(e, SlaWarned):
                    telemetry.SLA_WARNINGS.labels(clock.tier, clock.department).inc()
                elif isinstance(e, SlaBreached):
                    telemetry.SLA_BREACHES.labels(clock.tier, clock.department).inc()
                elif isinstance(e, EscalationRaised):
                    telemetry.ESCALATIONS.labels(e.level, clock.department).inc()
            out += events
        changed = [c for clock_id, c in clocks.items() if c is not before[clock_id]]
        await store.save(conn, changed)
        return out + [timer_message(c) for c in changed if c.pending]

    async def policies_query(self, pool: asyncpg.Pool, cmd: Command) -> Reply:  # noqa: ARG002
        """The SLA policies in force."""
        return Reply.success(self.policies.model_dump(mode="json"))
