"""Escalation's pure rules: SLA clocks and the 三呼三应 ladder. No I/O, the time is passed in.

A clock starts when a summons is issued, with the tier's policy snapshotted onto it. At the
deadline it is breached; then each ladder step is raised in turn, each after its own wait.
A report stops it. Every re-arm bumps the generation, so an older timer firing is stale.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from services.escalation.policy import LadderStep, TierPolicy
from shared.contracts import EscalationRaised, Event, SlaBreached, SummonsIssued
from shared.ids import uuid7

STREET_COMMAND = "street-command-centre"
DISTRICT_COMMAND = "district-command-centre"


@dataclass(frozen=True)
class Clock:
    id: UUID
    summons_id: UUID
    whistle_id: UUID
    kind: str  # report (on_site / resolve come with issue 5)
    responder_id: str
    superior_id: str | None
    deadline: datetime
    ladder: tuple[LadderStep, ...]
    state: str = "running"  # running | stopped | exhausted
    generation: int = 1
    breached: bool = False
    steps_done: int = 0
    fire_at: datetime | None = None


def report_deadline(issued_at: datetime, policy: TierPolicy) -> datetime:
    """Wall-time deadline to report (working-time calendars come with issue 5)."""
    return issued_at + policy.report_within


def start_report_clock(issued: SummonsIssued, policy: TierPolicy) -> Clock:
    """The report clock for a new summons, the policy's ladder copied onto it."""
    deadline = report_deadline(issued.occurred_at, policy)
    return Clock(
        id=uuid7(), summons_id=issued.summons_id, whistle_id=issued.whistle_id, kind="report",
        responder_id=issued.responder_id, superior_id=issued.superior_id, deadline=deadline,
        ladder=tuple(policy.ladder), fire_at=deadline,
    )


def stop(clock: Clock) -> Clock:
    """A report stops the clock; any timer still pending becomes stale."""
    if clock.state != "running":
        return clock
    return replace(clock, state="stopped", generation=clock.generation + 1, fire_at=None)


def target_of(clock: Clock, step: LadderStep) -> str:
    return {
        "responder": clock.responder_id,
        "superior": clock.superior_id or STREET_COMMAND,
        "street_command": STREET_COMMAND,
        "district": DISTRICT_COMMAND,
    }[step.level]


def fire(clock: Clock, generation: int, now: datetime) -> tuple[Clock, list[Event]]:
    """A timer fired: raise whatever is due (never early, never twice) and set the next firing."""
    if clock.state != "running" or generation != clock.generation or clock.fire_at is None:
        return clock, []  # stale: stopped, re-armed since, or exhausted
    events: list[Event] = []
    breached, steps_done, due = clock.breached, clock.steps_done, clock.fire_at
    common = dict(whistle_id=clock.whistle_id, summons_id=clock.summons_id, actor="system:escalation")
    while due is not None and due <= now:
        if not breached:
            breached = True
            events.append(SlaBreached(
                **common, occurred_at=now, responder_id=clock.responder_id, clock=clock.kind, deadline=clock.deadline,
            ))
            due = due + clock.ladder[0].after
            continue
        step = clock.ladder[steps_done]
        steps_done += 1
        events.append(EscalationRaised(
            **common, occurred_at=now, step=steps_done, level=step.level, target_id=target_of(clock, step),
            reason=f"{clock.kind} deadline {clock.deadline.isoformat()} passed unanswered / 超时未报到",
        ))
        due = due + clock.ladder[steps_done].after if steps_done < len(clock.ladder) else None
    return replace(
        clock, breached=breached, steps_done=steps_done, fire_at=due,
        state="running" if due is not None else "exhausted", generation=clock.generation + 1,
    ), events


def next_firing(clock: Clock) -> datetime | None:
    return clock.fire_at if clock.state == "running" else None


def overdue_by(clock: Clock, now: datetime) -> timedelta:
    return now - clock.fire_at if clock.fire_at else timedelta(0)
