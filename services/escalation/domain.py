"""Escalation's pure rules: SLA clocks and the 三呼三应 ladder. No I/O; the time is passed in.

When a summons is issued, each deadline of its policy (report, on site, resolve) becomes a clock,
the policy snapshotted onto it. A clock counts its budget in wall or working time (`Clockwork`),
warns at the warning point, breaches at the deadline, then raises each ladder step after its own
wall-time wait, repeating the ladder up to `ladder_repeats` times. Reporting, arriving or resolving
stops the matching clock. Waiting on the resident pauses the clocks not yet breached; resuming
gives them the time they had left; a granted extension moves a deadline. Every change bumps the
generation, so a timer armed before it is stale when it fires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from services.escalation.policy import Kind, LadderStep, TierPolicy
from shared.contracts import (
    EscalationRaised,
    Event,
    ExtensionGranted,
    ExtensionRefused,
    ExtensionRequested,
    SlaBreached,
    SlaWarned,
    SummonsIssued,
    SummonsOnSite,
    SummonsPaused,
    SummonsReported,
    SummonsResolved,
    SummonsResumed,
    SummonsReturned,
    SummonsTransferred,
)
from shared.ids import uuid7

STREET_COMMAND = "street-command-centre"
DISTRICT_COMMAND = "district-command-centre"
ZERO = timedelta(0)


class Clockwork(Protocol):
    """Wall time or a working-time calendar."""

    def add(self, start: datetime, duration: timedelta) -> datetime: ...
    def between(self, start: datetime, end: datetime) -> timedelta: ...


@dataclass(frozen=True)
class Clock:
    id: UUID
    summons_id: UUID
    whistle_id: UUID
    kind: Kind
    responder_id: str
    superior_id: str | None
    basis: str  # wall | working
    budget: timedelta  # time allowed, counted in the basis
    warn_at: float | None
    ladder: tuple[LadderStep, ...]
    ladder_repeats: int
    deadline: datetime | None  # None while paused
    segment_started_at: datetime | None  # when the current running stretch began
    consumed: timedelta = ZERO  # counted before the current stretch
    state: str = "running"  # running | paused | stopped | exhausted
    generation: int = 1
    warned: bool = False
    breached: bool = False
    steps_done: int = 0
    next_step_at: datetime | None = None
    fire_at: datetime | None = None
    tier: str = "routine"
    responder_kind: str = "member"
    floor_deadline: datetime | None = None  # a granted extension's deadline: never breach before it

    @property
    def department(self) -> str:
        """The unit for metrics: sections and departments by id, party members as one."""
        return "member" if self.responder_kind == "member" else self.responder_id

    @property
    def pending(self) -> bool:
        return self.state == "running" and self.fire_at is not None


CLOCK_FIELDS = frozenset(f.name for f in fields(Clock))
# what can change once a clock exists; the rest is the summons and the policy snapshot
MUTABLE_FIELDS = frozenset({
    "budget", "consumed", "deadline", "fire_at", "floor_deadline", "generation", "next_step_at",
    "segment_started_at", "state", "steps_done", "warned", "breached",
})


def evolve(clock: Clock, **changes: object) -> Clock:
    """`dataclasses.replace` without its field-by-field frozen __init__ (measured: most of a
    firing's CPU was spent there). Only the mutable fields can change."""
    if not changes.keys() <= MUTABLE_FIELDS:
        raise TypeError(f"not mutable Clock fields: {sorted(changes.keys() - MUTABLE_FIELDS)}")
    new = object.__new__(Clock)
    new.__dict__.update(clock.__dict__, **changes)
    return new


def restore(values: dict) -> Clock:
    """A clock from its stored columns (every field, already typed), the same way."""
    if values.keys() != CLOCK_FIELDS:
        raise TypeError(f"a stored clock needs exactly the Clock fields, not {sorted(values.keys() ^ CLOCK_FIELDS)}")
    new = object.__new__(Clock)
    new.__dict__.update(values)
    return new


def start_clocks(issued: SummonsIssued, policy: TierPolicy, cw: Clockwork) -> list[Clock]:
    """A clock per deadline of the policy, the policy snapshotted onto each."""
    clocks = []
    for kind, budget in policy.budgets().items():
        clock = Clock(
            id=uuid7(), summons_id=issued.summons_id, whistle_id=issued.whistle_id, kind=kind,
            responder_id=issued.responder_id, superior_id=issued.superior_id, basis=policy.basis,
            budget=budget, warn_at=policy.warn_at, ladder=tuple(policy.ladder), ladder_repeats=policy.ladder_repeats,
            deadline=None, segment_started_at=issued.occurred_at, tier=issued.tier.value,
            responder_kind=issued.responder_kind.value,
        )
        clocks.append(_schedule(clock, cw))
    return clocks


def _warn_due(clock: Clock, cw: Clockwork) -> datetime | None:
    if clock.warn_at is None or clock.warned or clock.breached or clock.segment_started_at is None:
        return None
    if clock.budget <= ZERO:
        return None
    left_to_warning = clock.budget * clock.warn_at - clock.consumed
    if left_to_warning <= ZERO:
        return clock.segment_started_at  # paused past the warning point: warn at once
    return cw.add(clock.segment_started_at, left_to_warning)


def _schedule(clock: Clock, cw: Clockwork) -> Clock:
    """Recompute the deadline and the next firing of a running clock."""
    if clock.state != "running":
        return evolve(clock, fire_at=None)
    if clock.breached:
        return evolve(clock, fire_at=clock.next_step_at, state="running" if clock.next_step_at else "exhausted")
    assert clock.segment_started_at is not None
    deadline = cw.add(clock.segment_started_at, max(clock.budget - clock.consumed, ZERO))
    if clock.floor_deadline is not None and deadline < clock.floor_deadline:
        # working time ends at closing: an extension "until Monday 08:30" must still hold all weekend
        deadline = clock.floor_deadline
    warn = _warn_due(clock, cw)
    return evolve(clock, deadline=deadline, fire_at=min(warn, deadline) if warn else deadline)


def target_of(clock: Clock, step: LadderStep) -> str:
    return {
        "responder": clock.responder_id,
        "superior": clock.superior_id or STREET_COMMAND,
        "street_command": STREET_COMMAND,
        "district": DISTRICT_COMMAND,
    }[step.level]


def fire(clock: Clock, generation: int, now: datetime, cw: Clockwork) -> tuple[Clock, list[Event]]:
    """A timer fired: raise whatever is due (never early, never twice) and set the next firing."""
    if not clock.pending or generation != clock.generation:
        return clock, []  # stale: stopped, paused, re-armed since, or exhausted
    events: list[Event] = []
    c = clock
    common = dict(whistle_id=c.whistle_id, summons_id=c.summons_id, actor="system:escalation", occurred_at=now)
    total_steps = len(c.ladder) * (1 + c.ladder_repeats)
    while True:
        warn = _warn_due(c, cw)
        # a warning only helps before the deadline: a late firing goes straight to the breach
        if warn is not None and warn <= now and (c.deadline is None or now < c.deadline):
            c = evolve(c, warned=True)
            events.append(SlaWarned(**common, responder_id=c.responder_id, clock=c.kind, deadline=c.deadline))
        elif not c.breached and c.deadline is not None and c.deadline <= now:
            c = evolve(c, breached=True, warned=True, next_step_at=c.deadline + c.ladder[0].after)
            events.append(SlaBreached(**common, responder_id=c.responder_id, clock=c.kind, deadline=c.deadline))
        elif c.breached and c.next_step_at is not None and c.next_step_at <= now:
            index = c.steps_done % len(c.ladder)
            step = c.ladder[index]
            done = c.steps_done + 1
            events.append(EscalationRaised(
                **common, clock=c.kind, step=done, round=c.steps_done // len(c.ladder) + 1, level=step.level,
                target_id=target_of(c, step),
                reason=f"{c.kind} deadline {c.deadline.isoformat()} passed unanswered / 超时未响应",
            ))
            following = c.ladder[done % len(c.ladder)].after if done < total_steps else None
            c = evolve(c, steps_done=done, next_step_at=c.next_step_at + following if following is not None else None)
        else:
            break
    c = _schedule(c, cw)
    return evolve(c, generation=clock.generation + 1), events


def stop(clock: Clock) -> Clock:
    """The responder answered: the clock stops, the ladder with it."""
    if clock.state in ("stopped", "exhausted") and not clock.pending:
        return clock
    return evolve(clock, state="stopped", fire_at=None, generation=clock.generation + 1)


def pause(clock: Clock, now: datetime, cw: Clockwork) -> Clock:
    """Hold a running clock with the time it has left; a breached one keeps climbing the ladder."""
    if clock.state != "running" or clock.breached or clock.segment_started_at is None:
        return clock
    if clock.deadline is not None and now >= clock.deadline:
        return clock  # already overdue, its firing just not handled yet: the breach stands
    consumed = clock.consumed + cw.between(clock.segment_started_at, now)
    return evolve(
        clock, state="paused", consumed=consumed, segment_started_at=None, deadline=None, fire_at=None,
        generation=clock.generation + 1,
    )


def resume(clock: Clock, now: datetime, cw: Clockwork) -> Clock:
    """Run a paused clock again with the time it had left."""
    if clock.state != "paused":
        return clock
    resumed = evolve(clock, state="running", segment_started_at=now, generation=clock.generation + 1)
    return _schedule(resumed, cw)


def extend(clock: Clock, new_deadline: datetime, now: datetime, cw: Clockwork) -> Clock:
    """A granted extension: the deadline moves; a breach and its ladder are cleared."""
    if clock.state in ("stopped",):
        return clock
    budget = cw.between(now, new_deadline)
    extended = evolve(
        clock, state="running", budget=budget, consumed=ZERO, segment_started_at=now, warned=False,
        breached=False, steps_done=0, next_step_at=None, generation=clock.generation + 1, floor_deadline=new_deadline,
    )
    return _schedule(extended, cw)


def _granted(clock: Clock, event: ExtensionGranted, now: datetime, cw: Clockwork) -> Clock:
    """The clock asked about gets its new deadline; the others, held while the request was pending, run again."""
    if clock.kind == event.clock:
        return extend(clock, event.new_deadline, now, cw)
    return resume(clock, now, cw)


# what each summons event (but its issue, which starts them) does to each of the summons' clocks
ClockEffect = Callable[[Clock, Any, datetime, Clockwork], Clock]
CLOCK_EFFECTS: dict[type[Event], ClockEffect] = {
    # a responder's move stops the clock it answers; the others run on
    SummonsReported: lambda clock, _, now, cw: stop(clock) if clock.kind == "report" else clock,
    SummonsOnSite: lambda clock, _, now, cw: stop(clock) if clock.kind == "on_site" else clock,
    # the summons is nobody's to answer any more: every clock stops, the ladder with it
    SummonsResolved: lambda clock, _, now, cw: stop(clock),
    SummonsReturned: lambda clock, _, now, cw: stop(clock),
    SummonsTransferred: lambda clock, _, now, cw: stop(clock),
    # waiting on the resident, or on a decision about more time: the clocks hold what they have left
    SummonsPaused: lambda clock, _, now, cw: pause(clock, now, cw),
    ExtensionRequested: lambda clock, _, now, cw: pause(clock, now, cw),
    SummonsResumed: lambda clock, _, now, cw: resume(clock, now, cw),
    ExtensionRefused: lambda clock, _, now, cw: resume(clock, now, cw),
    ExtensionGranted: _granted,
}


def apply(clock: Clock, event: Event, now: datetime, cw: Clockwork) -> Clock:
    """A summons event's effect on one of its clocks (`CLOCK_EFFECTS`); any other event leaves it as it is."""
    effect = CLOCK_EFFECTS.get(type(event))
    return effect(clock, event, now, cw) if effect is not None else clock

