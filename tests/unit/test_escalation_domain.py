"""SLA clocks and the 三呼三应 ladder: deadlines, stale timers, never early, never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.escalation.calendar import WallClock
from services.escalation.domain import DISTRICT_COMMAND, STREET_COMMAND, Clock, fire, start_clocks, stop
from services.escalation.policy import TierPolicy
from shared.contracts import EscalationRaised, ResponderKind, SlaBreached, SummonsIssued, Tier

WALL = WallClock()


def policy(report_within: str, ladder: list[dict]) -> TierPolicy:
    # no early warning: these tests are about the deadline and the ladder
    return TierPolicy.model_validate({"report_within": report_within, "ladder": ladder, "warn_at": None})


def report_clock(summons: SummonsIssued, tier_policy: TierPolicy) -> Clock:
    """The one clock a report-only policy starts."""
    [clock] = start_clocks(summons, tier_policy, WALL)
    return clock


NOW = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
WHISTLE_ID = UUID("0195f0a0-0000-7000-8000-000000000001")
SUMMONS_ID = UUID("0195f0a0-0000-7000-8000-000000000002")
MIN, HOUR = timedelta(minutes=1), timedelta(hours=1)

URGENT = policy("30m", [
    {"level": "responder", "after": "0s"},
    {"level": "superior", "after": "30m"},
    {"level": "street_command", "after": "1h"},
    {"level": "district", "after": "2h"},
])
DEADLINE = NOW + 30 * MIN
# cumulative due time of each step: 0, 30m, 1h30m, 3h30m after the deadline
STEP_DUE = [DEADLINE, DEADLINE + 30 * MIN, DEADLINE + 90 * MIN, DEADLINE + 210 * MIN]


def issued(superior_id: str | None = "m-branch1-secretary", at: datetime = NOW) -> SummonsIssued:
    return SummonsIssued(
        occurred_at=at, whistle_id=WHISTLE_ID, actor="system:routing", summons_id=SUMMONS_ID,
        responder_id="m-zhang-wei", responder_kind=ResponderKind.member, responder_name="Zhang Wei",
        superior_id=superior_id, category="clothes_drying", tier=Tier.urgent,
    )


def steps(events):
    return [(e.step, e.level, e.target_id) for e in events if isinstance(e, EscalationRaised)]


def test_report_deadline_is_wall_time():
    assert report_clock(issued(), URGENT).deadline == DEADLINE
    routine = policy("2h", [{"level": "superior", "after": 0}])
    # wall time: runs through the night and into Saturday with no office-hours adjustment
    late = datetime(2026, 3, 6, 23, 0, tzinfo=UTC)
    assert report_clock(issued(at=late), routine).deadline == datetime(2026, 3, 7, 1, 0, tzinfo=UTC)


def test_start_report_clock_snapshots_the_policy():
    clock = report_clock(issued(), URGENT)
    assert clock.summons_id == SUMMONS_ID and clock.whistle_id == WHISTLE_ID
    assert clock.kind == "report"
    assert clock.responder_id == "m-zhang-wei"
    assert clock.superior_id == "m-branch1-secretary"
    assert clock.deadline == DEADLINE
    assert clock.fire_at == clock.deadline
    assert (clock.state, clock.generation, clock.breached, clock.steps_done) == ("running", 1, False, 0)
    assert [s.level for s in clock.ladder] == ["responder", "superior", "street_command", "district"]
    assert isinstance(clock.ladder, tuple)


def test_editing_the_policy_later_does_not_change_a_running_clock():
    edited = URGENT.model_copy(deep=True)
    clock = report_clock(issued(), edited)
    edited.ladder.append(edited.ladder[-1])
    edited.ladder[0] = edited.ladder[1]
    assert [s.level for s in clock.ladder] == ["responder", "superior", "street_command", "district"]


def test_stop_bumps_generation_and_clears_firing():
    clock = report_clock(issued(), URGENT)
    stopped = stop(clock)
    assert stopped.state == "stopped"
    assert stopped.generation == clock.generation + 1
    assert stopped.fire_at is None


def test_stop_is_idempotent():
    stopped = stop(report_clock(issued(), URGENT))
    assert stop(stopped) is stopped


@pytest.mark.parametrize("generation", [1, 2])
def test_fire_after_stop_is_a_no_op(generation):
    stopped = stop(report_clock(issued(), URGENT))
    out, events = fire(stopped, generation, DEADLINE + 10 * HOUR, WALL)
    assert out is stopped
    assert events == []


@pytest.mark.parametrize("generation", [0, 2, 99])
def test_fire_with_wrong_generation_is_stale(generation):
    clock = report_clock(issued(), URGENT)
    out, events = fire(clock, generation, DEADLINE + 10 * HOUR, WALL)
    assert out is clock
    assert events == []


def test_fire_before_deadline_emits_nothing():
    clock = report_clock(issued(), URGENT)
    out, events = fire(clock, clock.generation, DEADLINE - timedelta(microseconds=1), WALL)
    assert events == []
    assert out.breached is False and out.steps_done == 0
    assert out.fire_at == DEADLINE
    assert out.state == "running"
    assert out.generation > clock.generation


def test_fire_at_deadline_breaches_and_raises_first_step():
    clock = report_clock(issued(), URGENT)
    out, events = fire(clock, clock.generation, DEADLINE, WALL)
    breach, step1 = events
    assert isinstance(breach, SlaBreached)
    assert breach.summons_id == SUMMONS_ID and breach.whistle_id == WHISTLE_ID
    assert breach.responder_id == "m-zhang-wei"
    assert breach.clock == "report"
    assert breach.deadline == DEADLINE
    assert breach.occurred_at == DEADLINE
    assert breach.actor == "system:escalation"
    assert isinstance(step1, EscalationRaised)
    assert (step1.step, step1.level, step1.target_id) == (1, "responder", "m-zhang-wei")
    assert step1.summons_id == SUMMONS_ID and step1.whistle_id == WHISTLE_ID
    assert step1.reason
    assert out.breached is True and out.steps_done == 1
    assert out.fire_at == STEP_DUE[1]
    assert out.state == "running"


def test_ladder_walk_one_step_per_due_time():
    clock = report_clock(issued(), URGENT)
    clock, _ = fire(clock, clock.generation, DEADLINE, WALL)

    clock, events = fire(clock, clock.generation, STEP_DUE[1] - timedelta(seconds=1), WALL)
    assert events == []  # never early

    clock, events = fire(clock, clock.generation, STEP_DUE[1], WALL)
    assert steps(events) == [(2, "superior", "m-branch1-secretary")]
    assert clock.fire_at == STEP_DUE[2]

    clock, events = fire(clock, clock.generation, STEP_DUE[2], WALL)
    assert steps(events) == [(3, "street_command", STREET_COMMAND)]
    assert clock.fire_at == STEP_DUE[3]

    clock, events = fire(clock, clock.generation, STEP_DUE[3], WALL)
    assert steps(events) == [(4, "district", DISTRICT_COMMAND)]
    assert clock.state == "exhausted"
    assert clock.fire_at is None

    later, events = fire(clock, clock.generation, STEP_DUE[3] + 10 * HOUR, WALL)
    assert later is clock
    assert events == []


def test_superior_step_without_superior_goes_to_street_command():
    clock = report_clock(issued(superior_id=None), URGENT)
    _, events = fire(clock, clock.generation, STEP_DUE[1], WALL)
    assert steps(events)[1] == (2, "superior", STREET_COMMAND)


def test_three_hours_late_raises_every_overdue_step_once_in_order():
    clock = report_clock(issued(), URGENT)
    late = DEADLINE + 3 * HOUR
    clock, events = fire(clock, clock.generation, late, WALL)
    assert isinstance(events[0], SlaBreached)
    assert sum(isinstance(e, SlaBreached) for e in events) == 1
    assert steps(events) == [
        (1, "responder", "m-zhang-wei"),
        (2, "superior", "m-branch1-secretary"),
        (3, "street_command", STREET_COMMAND),
    ]
    assert all(e.occurred_at == late for e in events)
    assert clock.fire_at == STEP_DUE[3]  # the district step is not due until 3h30m

    clock, events = fire(clock, clock.generation, STEP_DUE[3], WALL)
    assert steps(events) == [(4, "district", DISTRICT_COMMAND)]
    assert not any(isinstance(e, SlaBreached) for e in events)


def test_very_late_firing_exhausts_the_ladder_at_once():
    clock = report_clock(issued(), URGENT)
    clock, events = fire(clock, clock.generation, DEADLINE + timedelta(days=2), WALL)
    assert [e.step for e in events if isinstance(e, EscalationRaised)] == [1, 2, 3, 4]
    assert clock.state == "exhausted"


def test_old_timer_after_a_firing_is_stale():
    clock = report_clock(issued(), URGENT)
    first = clock.generation
    clock, _ = fire(clock, first, DEADLINE, WALL)
    again, events = fire(clock, first, DEADLINE + 10 * HOUR, WALL)  # the same timer delivered twice
    assert again is clock
    assert events == []


def test_stop_after_breach_silences_the_rest_of_the_ladder():
    clock = report_clock(issued(), URGENT)
    clock, _ = fire(clock, clock.generation, DEADLINE, WALL)
    stopped = stop(clock)
    assert stopped.steps_done == 1
    out, events = fire(stopped, clock.generation, STEP_DUE[3], WALL)
    assert (out, events) == (stopped, [])


def test_first_step_with_a_wait_is_raised_after_the_breach():
    clock = report_clock(issued(), policy("1h", [{"level": "superior", "after": "10m"}]))
    deadline = NOW + HOUR
    clock, events = fire(clock, clock.generation, deadline, WALL)
    assert [type(e) for e in events] == [SlaBreached]
    assert clock.fire_at == deadline + 10 * MIN
    clock, events = fire(clock, clock.generation, deadline + 10 * MIN, WALL)
    assert steps(events) == [(1, "superior", "m-branch1-secretary")]
    assert clock.state == "exhausted"


def test_generation_strictly_increases_across_firings():
    clock = report_clock(issued(), URGENT)
    generations = [clock.generation]
    for at in [DEADLINE - MIN, DEADLINE, STEP_DUE[1] - MIN, STEP_DUE[1], STEP_DUE[2], STEP_DUE[3]]:
        clock, _ = fire(clock, clock.generation, at, WALL)
        generations.append(clock.generation)
    assert generations == sorted(set(generations))
    assert clock.state == "exhausted"


# seconds after NOW: anywhere in the first five hours, or within two seconds of a due time
DUE_SECONDS = [int((due - NOW).total_seconds()) for due in STEP_DUE]
firing_offsets = st.integers(min_value=0, max_value=5 * 3600) | st.builds(
    lambda due, delta: due + delta, st.sampled_from(DUE_SECONDS), st.integers(min_value=-2, max_value=2),
)


@settings(max_examples=200)
@given(offsets=st.lists(firing_offsets, min_size=1, max_size=12))
def test_any_schedule_of_firings_raises_each_step_once_and_never_early(offsets):
    """Whatever the timers' delivery times, each step is raised once, at the first firing on or after its due time."""
    times = [NOW + timedelta(seconds=s) for s in sorted(offsets)]
    clock = report_clock(issued(), URGENT)
    raised: list[tuple[int, datetime]] = []
    breaches = []
    for at in times:
        clock, events = fire(clock, clock.generation, at, WALL)
        breaches += [e for e in events if isinstance(e, SlaBreached)]
        raised += [(e.step, e.occurred_at) for e in events if isinstance(e, EscalationRaised)]
    assert [n for n, _ in raised] == list(range(1, len(raised) + 1))
    for n, at in raised:
        due = STEP_DUE[n - 1]
        assert at >= due  # never early
        assert at == min(t for t in times if t >= due)  # at the first chance
    expected_steps = sum(1 for due in STEP_DUE if any(t >= due for t in times))
    assert len(raised) == expected_steps
    assert len(breaches) == (1 if times[-1] >= DEADLINE else 0)


def test_the_schedule_fires_ahead_by_the_lead_and_names_the_clock_time_it_is_held_until():
    import json

    from services.escalation.timers import parse_due, timer_message

    clock = report_clock(issued(), URGENT)
    message = timer_message(clock, lead=timedelta(milliseconds=500))
    assert message.headers["Nats-Schedule"] == "@at 2026-03-06T09:29:59.500000Z"
    assert message.headers["Nats-Schedule-Target"] == f"clock.due.{clock.id}"
    due = parse_due(type("Msg", (), {"data": message.body})())
    assert (due.clock_id, due.generation, due.due_at) == (clock.id, clock.generation, DEADLINE)
    # without a lead the schedule is the clock's time itself
    assert timer_message(clock).headers["Nats-Schedule"] == "@at 2026-03-06T09:30:00.000000Z"
    # a time in another zone is given in UTC
    from zoneinfo import ZoneInfo

    from services.escalation.timers import _utc_text
    beijing = datetime(2026, 3, 6, 17, 30, 0, 7, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert _utc_text(beijing) == "2026-03-06T09:30:00.000007Z"
    # a firing armed before the lead existed names no time: it is handled at once
    assert parse_due(type("Msg", (), {"data": json.dumps(
        {"clock_id": str(clock.id), "generation": 1}).encode()})()).due_at is None
