"""Escalation's handlers: clocks follow the summons' events; timer firings climb the ladder."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import structlog

from services.escalation import domain, store
from services.escalation.calendar import WallClock
from services.escalation.policy import Policies
from services.escalation.timers import REARMED, ClockDue, timer_message
from shared import telemetry
from shared.contracts import (
    Command,
    EscalationRaised,
    Event,
    Reply,
    SlaBreached,
    SlaRescheduled,
    SlaStarted,
    SlaWarned,
    SummonsIssued,
)
from shared.db import OutboxMessage
from shared.ids import utcnow, uuid7

log = structlog.get_logger("escalation")
_STALE = (telemetry.HANDLED, ("escalation", "clock.due", "stale"))


@dataclass(frozen=True, slots=True)
class Firing:
    """A clock's firing worked out as soon as its timer arrived, ahead of its time: the clock as it
    will be and the messages it will send, serialised. Saved when due if the clock is still at the
    generation it was read at (`was`); a clock changed meanwhile makes the firing stale."""

    due: ClockDue
    fired: domain.Clock | None  # None: stale when read (stopped, paused, re-armed since)
    was: int = 0
    effects: tuple[OutboxMessage, ...] = ()
    counts: tuple[tuple, ...] = ()  # (metric, labels) to count once saved


class EscalationHandlers:
    def __init__(self, policies: Policies, timer_lead: timedelta = timedelta(0)):
        self.policies = policies
        self.timer_lead = timer_lead
        # the policy of a (tier, category), worked out once: read-only once loaded
        self._policy = functools.cache(policies.for_summons)
        self.clockworks: dict[str, domain.Clockwork] = {"wall": WallClock(), "working": policies.calendar.build()}

    def _cw(self, clock: domain.Clock) -> domain.Clockwork:
        return self.clockworks[clock.basis]

    async def on_summons_events(self, conn: asyncpg.Connection, events: list[Event], now: datetime) -> list:
        """Start, stop, pause, resume or extend the summons' clocks (`domain.CLOCK_EFFECTS`); arm what is pending.

        A batch at a time, set-based: the new summons' clocks in one insert, then every other
        event applied in stream order to its summons' clocks (locked together), saved in one
        update. A summons is issued before anything else happens to it, so starting first keeps
        each summons' order.
        """
        started = self._start([e for e in events if isinstance(e, SummonsIssued)])
        # a redelivered summons.issued finds its clocks there already: nothing is inserted nor emitted
        fresh = await store.insert(conn, [c for _, clocks in started.values() for c in clocks])
        out = [effect for summons_id, (effects, _) in started.items() if summons_id in fresh for effect in effects]
        moves = [e for e in events if not isinstance(e, SummonsIssued)]
        if not moves:
            return out
        by_summons = await store.lock_summons_clocks(conn, list({e.summons_id for e in moves}))
        before = {c.id: c for clocks in by_summons.values() for c in clocks}
        for event in moves:
            clocks = by_summons.get(event.summons_id, [])
            after = [domain.apply(c, event, now, self._cw(c)) for c in clocks]
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
        return out + [timer_message(c, lead=self.timer_lead) for c in changed if c.pending]

    def _start(self, issued: list[SummonsIssued]) -> dict[UUID, tuple[list, list[domain.Clock]]]:
        """Per new summons: its clocks, with their sla.started and timers (the first copy of each)."""
        started: dict[UUID, tuple[list, list[domain.Clock]]] = {}
        for event in issued:
            if event.summons_id in started:
                continue
            policy = self._policy(event.tier, event.category)
            clocks = domain.start_clocks(event, policy, self.clockworks[policy.basis])
            if not clocks:
                continue
            started[event.summons_id] = ([
                SlaStarted(
                    occurred_at=event.occurred_at, whistle_id=event.whistle_id, summons_id=event.summons_id,
                    responder_id=event.responder_id, basis=policy.basis, causation_id=event.event_id,
                    actor="system:escalation", deadlines={c.kind: c.deadline for c in clocks},
                ),
                *(timer_message(c, lead=self.timer_lead) for c in clocks),
            ], clocks)
        return started

    async def prepare_dues(self, pool: asyncpg.Pool, dues: list[ClockDue]) -> list[ClockDue | Firing]:
        """Work out each firing as its timer arrives (before its time): read the clock, fire it as of
        its due time, serialise what it sends. A clock not found is left to the handler."""
        clocks = await store.read_clocks(pool, list({d.clock_id for d in dues}))
        now = utcnow()
        out: list[ClockDue | Firing] = []
        for due in dues:
            clock = clocks.get(due.clock_id)
            if clock is None:
                out.append(due)
                continue
            at = max(due.due_at, now) if due.due_at else now
            fired, events = domain.fire(clock, due.generation, at, self._cw(clock))
            if fired is clock:
                # an older generation's firing for a clock still running: the handler locks the
                # clock and arms its current schedule again
                out.append(due if _rearms(clock, due) else Firing(due, None))
                continue
            effects = [OutboxMessage.of(e) for e in events]
            if fired.pending:
                effects.append(timer_message(fired, lead=self.timer_lead))
            out.append(Firing(due, fired, clock.generation, tuple(effects), tuple(_counts(clock, events))))
        return out

    async def on_clocks_due(self, conn: asyncpg.Connection, items: list[ClockDue | Firing], now: datetime) -> list:
        """Timers fired: warn, breach, climb the ladder — or drop a firing whose generation is stale
        (re-arming the clock's current schedule if it still runs).

        A firing worked out ahead is saved only where its clock still stands at the generation it
        was read at (one statement, no lock taken first); a timer that came without (its clock not
        found then, or preparing failed) is worked out here, its clock locked."""
        dues = [i for i in items if isinstance(i, ClockDue)]
        out = await self._fire_locked(conn, dues, now) if dues else []
        counts: Counter = Counter()  # (metric, labels) -> n: one labels() lookup per kind, not per event
        live: dict[UUID, Firing] = {}
        for f in items:
            if isinstance(f, Firing):
                if f.fired is None or f.fired.id in live:  # a second timer of the same clock is stale
                    counts[_STALE] += 1
                else:
                    live[f.fired.id] = f
        saved = await store.save_fired(conn, [(f.fired, f.was) for f in live.values()])
        for clock_id, f in live.items():
            if clock_id in saved:
                out += f.effects
                counts.update(f.counts)
            else:
                counts[_STALE] += 1
        for (metric, labels), n in counts.items():
            metric.labels(*labels).inc(n)
        return out

    async def _fire_locked(self, conn: asyncpg.Connection, dues: list[ClockDue], now: datetime) -> list:
        clocks = await store.lock_clocks(conn, list({d.clock_id for d in dues}))
        before = dict(clocks)
        out: list = []
        counts: Counter = Counter()
        stale: dict[UUID, int] = {}  # clock id -> the generation of a stale firing that re-arms it
        for due in dues:
            clock = clocks.get(due.clock_id)
            if clock is None:
                log.warning("clock.unknown", clock_id=str(due.clock_id))
                continue
            updated, events = domain.fire(clock, due.generation, now, self._cw(clock))
            if updated is clock:
                counts[_STALE] += 1
                if _rearms(clock, due):
                    stale[clock.id] = due.generation
                continue
            clocks[due.clock_id] = updated
            counts.update(_counts(clock, events))
            out += events
        for (metric, labels), n in counts.items():
            metric.labels(*labels).inc(n)
        changed = [c for clock_id, c in clocks.items() if c is not before[clock_id]]
        await store.save(conn, changed)
        out += [timer_message(c, lead=self.timer_lead) for c in changed if c.pending]
        # the schedule it carried may have replaced the current one (published out of order, or NATS
        # restored from an older state): arm the current one again, unless fired here (armed above)
        rearm = [clocks[i] for i in stale if clocks[i] is before[i]]
        if rearm:
            tag = f"-f{uuid7().hex[:12]}"
            out += [timer_message(c, tag, self.timer_lead) for c in rearm]
            REARMED.labels("stale_firing").inc(len(rearm))
            for c in rearm:
                log.warning("clock.rearmed", clock_id=str(c.id), reason="stale_firing", firing_generation=stale[c.id],
                            generation=c.generation, fire_at=c.fire_at.isoformat())
        return out

    async def policies_query(self, pool: asyncpg.Pool, cmd: Command) -> Reply:  # noqa: ARG002
        """The SLA policies in force."""
        return Reply.success(self.policies.model_dump(mode="json"))


def _rearms(clock: domain.Clock, due: ClockDue) -> bool:
    """A firing of another generation for a clock still running re-arms the clock's current schedule."""
    return clock.pending and due.generation != clock.generation


def _counts(clock: domain.Clock, events: list[Event]) -> list[tuple]:
    """The supervisors' counters a firing's events add to, as (metric, labels)."""
    out = []
    for e in events:
        if isinstance(e, SlaWarned):
            out.append((telemetry.SLA_WARNINGS, (clock.tier, clock.department)))
        elif isinstance(e, SlaBreached):
            out.append((telemetry.SLA_BREACHES, (clock.tier, clock.department)))
        elif isinstance(e, EscalationRaised):
            out.append((telemetry.ESCALATIONS, (e.level, clock.department)))
    return out
