"""Several clocks per summons: warnings, ladder repeats, pause / resume, extensions, working time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import accumulate, cycle, islice
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.escalation.calendar import CalendarSpec, WallClock
from services.escalation.domain import (
    CLOCK_EFFECTS,
    STREET_COMMAND,
    Clock,
    Clockwork,
    apply,
    extend,
    fire,
    pause,
    resume,
    start_clocks,
    stop,
)
from services.escalation.policy import TierPolicy
from shared.contracts import (
    EVENT_TYPES,
    EscalationRaised,
    Event,
    ExtensionGranted,
    ExtensionRefused,
    ExtensionRequested,
    ResponderKind,
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
    Tier,
)

WALL = WallClock()
WORKING = CalendarSpec().build()  # Beijing office hours 08:30-12:00, 13:30-17:30, Chinese holidays
BEIJING = ZoneInfo("Asia/Shanghai")

NOW = datetime(2026, 3, 6, 1, 0, tzinfo=UTC)  # Friday 09:00 in Beijing
SECOND, MIN, HOUR = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)
WHISTLE_ID = UUID("0195f0a0-0000-7000-8000-000000000011")
SUMMONS_ID = UUID("0195f0a0-0000-7000-8000-000000000012")
TWO_STEPS = [{"level": "responder", "after": "10m"}, {"level": "superior", "after": "20m"}]


def tier_policy(**fields) -> TierPolicy:
    return TierPolicy.model_validate({"report_within": "50m", "warn_at": 0.8, "ladder": TWO_STEPS} | fields)


def issued(at: datetime = NOW) -> SummonsIssued:
    return SummonsIssued(
        occurred_at=at, whistle_id=WHISTLE_ID, actor="system:routing", summons_id=SUMMONS_ID,
        responder_id="d-property-co", responder_kind=ResponderKind.department, responder_name="Property company",
        superior_id="d-housing-commission", category="roof_leak", tier=Tier.urgent,
    )


def report_clock(policy: TierPolicy | None = None, at: datetime = NOW, cw: Clockwork = WALL) -> Clock:
    [clock] = [c for c in start_clocks(issued(at), policy or tier_policy(), cw) if c.kind == "report"]
    return clock


def kinds(events: list[Event]) -> list[type[Event]]:
    return [type(e) for e in events]


def raised(events: list[Event]) -> list[tuple[int, int, str, str]]:
    return [(e.step, e.round, e.level, e.target_id) for e in events if isinstance(e, EscalationRaised)]


# --- start --------------------------------------------------------------------------------------------


def test_a_clock_for_each_deadline_the_policy_sets():
    policy = tier_policy(report_within="30m", on_site_within="2h", resolve_within="1d", ladder_repeats=2)
    clocks = start_clocks(issued(), policy, WALL)
    assert [c.kind for c in clocks] == ["report", "on_site", "resolve"]
    assert len({c.id for c in clocks}) == 3
    budgets = {"report": 30 * MIN, "on_site": 2 * HOUR, "resolve": 24 * HOUR}
    for clock in clocks:
        assert clock.summons_id == SUMMONS_ID and clock.whistle_id == WHISTLE_ID
        assert clock.responder_id == "d-property-co" and clock.superior_id == "d-housing-commission"
        assert clock.budget == budgets[clock.kind]
        assert clock.deadline == NOW + budgets[clock.kind]
        assert clock.fire_at == NOW + budgets[clock.kind] * 0.8  # the warning point comes first
        assert [s.level for s in clock.ladder] == ["responder", "superior"]
        assert isinstance(clock.ladder, tuple)
        assert clock.ladder_repeats == 2
        assert (clock.state, clock.warned, clock.breached, clock.steps_done) == ("running", False, False, 0)


def test_only_the_deadlines_set_get_a_clock():
    assert [c.kind for c in start_clocks(issued(), tier_policy(), WALL)] == ["report"]
    both = tier_policy(resolve_within="3d")
    assert [c.kind for c in start_clocks(issued(), both, WALL)] == ["report", "resolve"]


def test_without_a_warning_point_the_first_firing_is_the_deadline():
    clock = report_clock(tier_policy(warn_at=None))
    assert clock.fire_at == clock.deadline == NOW + 50 * MIN


def test_a_later_policy_edit_does_not_reach_running_clocks():
    policy = tier_policy(ladder_repeats=1)
    clock = report_clock(policy)
    policy.ladder.append(policy.ladder[0])
    policy.ladder_repeats = 5
    assert len(clock.ladder) == 2 and clock.ladder_repeats == 1


# --- warning ------------------------------------------------------------------------------------------

WARN, DEADLINE = NOW + 40 * MIN, NOW + 50 * MIN  # 80 % of 50 minutes


def test_before_the_warning_point_nothing_is_raised():
    clock = report_clock()
    out, events = fire(clock, clock.generation, WARN - SECOND, WALL)
    assert events == []
    assert out.fire_at == WARN and not out.warned


def test_the_warning_point_warns_once_then_rearms_at_the_deadline():
    clock = report_clock()
    warned, events = fire(clock, clock.generation, WARN, WALL)
    [warning] = events
    assert isinstance(warning, SlaWarned)
    assert (warning.clock, warning.deadline, warning.occurred_at) == ("report", DEADLINE, WARN)
    assert (warning.summons_id, warning.responder_id, warning.actor) == (SUMMONS_ID, "d-property-co", "system:escalation")
    assert warned.fire_at == DEADLINE and warned.warned and not warned.breached
    assert warned.generation > clock.generation

    again, events = fire(warned, clock.generation, DEADLINE, WALL)  # the warning timer delivered twice
    assert (again, events) == (warned, [])

    breached, events = fire(warned, warned.generation, DEADLINE, WALL)
    assert kinds(events) == [SlaBreached]  # no second warning at the deadline


def test_a_warning_timer_running_late_still_warns_before_the_deadline():
    clock = report_clock()
    out, events = fire(clock, clock.generation, DEADLINE - MIN, WALL)
    assert kinds(events) == [SlaWarned]
    assert out.fire_at == DEADLINE


def test_no_warning_ever_follows_a_breach():
    clock = report_clock(tier_policy(ladder_repeats=3))
    emitted: list[Event] = []
    for at in [WARN, DEADLINE, DEADLINE + 10 * MIN, DEADLINE + HOUR, DEADLINE + 5 * HOUR]:
        clock, events = fire(clock, clock.generation, at, WALL)
        emitted += events
    assert kinds(emitted).count(SlaWarned) == 1
    assert kinds(emitted).index(SlaWarned) < kinds(emitted).index(SlaBreached)
    assert clock.state == "exhausted"


def test_without_a_warning_point_no_warning_is_raised():
    clock = report_clock(tier_policy(warn_at=None))
    emitted: list[Event] = []
    for at in [WARN, DEADLINE, DEADLINE + 5 * HOUR]:
        clock, events = fire(clock, clock.generation, at, WALL)
        emitted += events
    assert SlaWarned not in kinds(emitted)
    assert kinds(emitted)[0] is SlaBreached


def test_a_very_late_first_firing_breaches_and_raises_the_due_steps_in_order_without_a_stale_warning():
    # a warning after the deadline is noise for a supervisor: the late firing goes straight to the breach
    clock = report_clock()
    late = DEADLINE + 35 * MIN  # steps due at +10m and +30m
    out, events = fire(clock, clock.generation, late, WALL)
    assert kinds(events) == [SlaBreached, EscalationRaised, EscalationRaised]
    assert all(e.occurred_at == late for e in events)
    assert events[0].deadline == DEADLINE
    assert raised(events) == [(1, 1, "responder", "d-property-co"), (2, 1, "superior", "d-housing-commission")]
    assert out.steps_done == 2 and out.state == "exhausted"


# --- ladder repeats -------------------------------------------------------------------------------------


def test_the_ladder_repeats_then_the_clock_is_exhausted():
    clock = report_clock(tier_policy(warn_at=None, ladder_repeats=1))
    clock, events = fire(clock, clock.generation, DEADLINE, WALL)
    assert kinds(events) == [SlaBreached]
    due = [DEADLINE + d for d in accumulate([10 * MIN, 20 * MIN, 10 * MIN, 20 * MIN])]
    emitted = []
    for at in due:
        assert clock.fire_at == at
        clock, events = fire(clock, clock.generation, at, WALL)
        emitted += raised(events)
    assert emitted == [
        (1, 1, "responder", "d-property-co"),
        (2, 1, "superior", "d-housing-commission"),
        (3, 2, "responder", "d-property-co"),
        (4, 2, "superior", "d-housing-commission"),
    ]
    assert clock.state == "exhausted" and clock.fire_at is None
    after, events = fire(clock, clock.generation, due[-1] + 10 * HOUR, WALL)
    assert (after, events) == (clock, [])


def test_a_day_late_firing_raises_every_round_at_once_and_no_more():
    clock = report_clock(tier_policy(warn_at=None, ladder_repeats=1))
    clock, events = fire(clock, clock.generation, DEADLINE + 24 * HOUR, WALL)
    assert [step for step, *_ in raised(events)] == [1, 2, 3, 4]
    assert clock.state == "exhausted"


# --- pause / resume --------------------------------------------------------------------------------------


def test_pause_holds_the_time_used_and_drops_the_pending_timer():
    clock = report_clock()
    paused = pause(clock, NOW + 10 * MIN, WALL)
    assert paused.state == "paused"
    assert paused.consumed == 10 * MIN
    assert paused.fire_at is None and paused.deadline is None
    assert paused.generation > clock.generation
    for generation in (clock.generation, paused.generation):
        out, events = fire(paused, generation, DEADLINE + HOUR, WALL)
        assert (out, events) == (paused, [])
    # frozen while waiting on the resident: no running segment, 40 minutes of the budget left
    assert paused.segment_started_at is None and paused.budget - paused.consumed == 40 * MIN


def test_a_breached_clock_is_not_paused_and_keeps_climbing():
    clock = report_clock(tier_policy(warn_at=None))
    clock, _ = fire(clock, clock.generation, DEADLINE, WALL)
    assert pause(clock, DEADLINE + MIN, WALL) is clock
    _, events = fire(clock, clock.generation, DEADLINE + 10 * MIN, WALL)
    assert raised(events) == [(1, 1, "responder", "d-property-co")]


def test_pausing_a_clock_already_past_its_deadline_does_not_hide_the_breach():
    # A pause (resident wait, extension request) handled a minute after the deadline, before the
    # deadline's timer was delivered: the clock was already overdue and the breach must keep its deadline.
    clock = report_clock(tier_policy(warn_at=None))
    late_pause = pause(clock, DEADLINE + MIN, WALL)
    later = resume(late_pause, DEADLINE + 2 * HOUR, WALL)
    _, events = fire(later, later.generation, DEADLINE + 2 * HOUR, WALL)
    assert [e.deadline for e in events if isinstance(e, SlaBreached)] == [DEADLINE]


def test_resume_gives_back_the_time_left_and_shifts_the_warning():
    clock = report_clock()
    paused = pause(clock, NOW + 10 * MIN, WALL)
    back = NOW + 3 * HOUR
    resumed = resume(paused, back, WALL)
    assert resumed.state == "running"
    assert resumed.deadline == back + 40 * MIN
    assert resumed.fire_at == back + 30 * MIN  # the warning point, 40 minutes into the budget
    assert resumed.generation > paused.generation
    out, events = fire(resumed, clock.generation, back + HOUR, WALL)  # a timer from before the pause
    assert (out, events) == (resumed, [])
    _, events = fire(resumed, resumed.generation, back + 30 * MIN, WALL)
    assert kinds(events) == [SlaWarned] and events[0].deadline == back + 40 * MIN


def test_a_clock_paused_past_its_warning_point_warns_at_once_on_resume():
    clock = report_clock()
    paused = pause(clock, NOW + 45 * MIN, WALL)  # the warning timer had not fired yet
    back = NOW + 2 * HOUR
    resumed = resume(paused, back, WALL)
    assert resumed.fire_at == back
    assert resumed.deadline == back + 5 * MIN
    out, events = fire(resumed, resumed.generation, back, WALL)
    assert kinds(events) == [SlaWarned]
    assert out.fire_at == back + 5 * MIN


def test_a_clock_warned_before_the_pause_is_not_warned_again():
    clock = report_clock()
    clock, _ = fire(clock, clock.generation, WARN, WALL)
    resumed = resume(pause(clock, NOW + 45 * MIN, WALL), NOW + 2 * HOUR, WALL)
    assert resumed.fire_at == resumed.deadline == NOW + 2 * HOUR + 5 * MIN
    _, events = fire(resumed, resumed.generation, resumed.deadline, WALL)
    assert kinds(events) == [SlaBreached]


def test_resume_leaves_a_running_clock_alone():
    clock = report_clock()
    assert resume(clock, NOW + MIN, WALL) is clock


# --- extension ----------------------------------------------------------------------------------------


def test_an_extension_moves_the_deadline_and_the_warning():
    clock = report_clock()
    granted = NOW + 2 * HOUR
    extended = extend(clock, granted, NOW + 20 * MIN, WALL)
    assert extended.deadline == granted
    assert extended.fire_at == NOW + 20 * MIN + 80 * MIN  # 80 % of the 100 minutes granted
    assert extended.generation > clock.generation
    assert fire(extended, clock.generation, DEADLINE, WALL) == (extended, [])  # the old deadline's timer


def test_an_extension_clears_the_breach_and_restarts_the_ladder():
    clock = report_clock()
    clock, _ = fire(clock, clock.generation, DEADLINE + 15 * MIN, WALL)
    assert clock.breached and clock.steps_done == 1
    at, granted = DEADLINE + 20 * MIN, DEADLINE + 20 * MIN + HOUR
    extended = extend(clock, granted, at, WALL)
    assert (extended.breached, extended.warned, extended.steps_done) == (False, False, 0)
    assert extended.state == "running" and extended.deadline == granted
    out, events = fire(extended, clock.generation, granted + HOUR, WALL)  # the ladder's old timer
    assert (out, events) == (extended, [])
    emitted: list[Event] = []
    for moment in (at + 48 * MIN, granted, granted + 10 * MIN):
        extended, events = fire(extended, extended.generation, moment, WALL)
        emitted += events
    assert kinds(emitted) == [SlaWarned, SlaBreached, EscalationRaised]
    assert emitted[1].deadline == granted
    assert raised(emitted) == [(1, 1, "responder", "d-property-co")]


def test_a_stopped_clock_is_not_extended():
    stopped = stop(report_clock())
    assert extend(stopped, NOW + 5 * HOUR, NOW + MIN, WALL) is stopped


def test_extending_an_exhausted_clock_runs_it_again():
    clock = report_clock(tier_policy(warn_at=None))
    clock, _ = fire(clock, clock.generation, DEADLINE + HOUR, WALL)
    assert clock.state == "exhausted"
    granted = DEADLINE + 3 * HOUR
    extended = extend(clock, granted, DEADLINE + 2 * HOUR, WALL)
    assert extended.state == "running" and extended.fire_at == granted
    _, events = fire(extended, extended.generation, granted + 10 * MIN, WALL)
    assert kinds(events) == [SlaBreached, EscalationRaised]
    assert raised(events)[0][0] == 1


# --- stop ---------------------------------------------------------------------------------------------


def test_a_stopped_clock_ignores_its_pending_timer_and_stays_stopped():
    clock = report_clock()
    stopped = stop(clock)
    assert fire(stopped, clock.generation, DEADLINE, WALL) == (stopped, [])
    assert stop(stopped) is stopped
    assert resume(stopped, DEADLINE, WALL) is stopped
    assert pause(stopped, DEADLINE, WALL) is stopped


def test_stopping_a_paused_clock_keeps_it_from_coming_back():
    paused = pause(report_clock(), NOW + 10 * MIN, WALL)
    stopped = stop(paused)
    assert stopped.state == "stopped" and stopped.generation > paused.generation
    assert resume(stopped, NOW + HOUR, WALL) is stopped


# --- each summons event's effect on its clocks (CLOCK_EFFECTS) ----------------------------------------


def summons_event(cls: type[Event], at: datetime, **fields) -> Event:
    return cls(occurred_at=at, whistle_id=WHISTLE_ID, actor="responder:d-property-co", summons_id=SUMMONS_ID,
               responder_id="d-property-co", **fields)


def test_every_summons_event_but_its_issue_has_its_effect_on_the_clocks():
    summons_events = {cls for subject, cls in EVENT_TYPES.items() if subject.startswith("summons.")}
    assert set(CLOCK_EFFECTS) == summons_events - {SummonsIssued}


def test_a_move_stops_the_clock_it_answers_and_an_end_stops_every_clock():
    clocks = start_clocks(issued(), tier_policy(on_site_within="2h", resolve_within="1d"), WALL)
    at = NOW + MIN

    def states(event: Event) -> dict[str, str]:
        return {c.kind: apply(c, event, at, WALL).state for c in clocks}

    running = {"report": "running", "on_site": "running", "resolve": "running"}
    assert states(summons_event(SummonsReported, at)) == running | {"report": "stopped"}
    assert states(summons_event(SummonsOnSite, at)) == running | {"on_site": "stopped"}
    ended = dict.fromkeys(running, "stopped")
    assert states(summons_event(SummonsResolved, at)) == ended
    assert states(summons_event(SummonsReturned, at, reason_code="wrong_area")) == ended
    assert states(summons_event(SummonsTransferred, at, to_responder_id="d-housing", reason="x")) == ended
    assert states(summons_event(SummonsPaused, at)) == dict.fromkeys(running, "paused")
    assert states(summons_event(ExtensionRequested, at, new_deadline=NOW + 3 * HOUR, reason="x")) == dict.fromkeys(
        running, "paused")


def test_a_decision_on_an_extension_moves_its_clock_and_runs_the_others_again():
    clocks = start_clocks(issued(), tier_policy(resolve_within="1d"), WALL)
    asked_at, decided_at, granted = NOW + 10 * MIN, NOW + 30 * MIN, NOW + 2 * 24 * HOUR
    held = [apply(c, summons_event(ExtensionRequested, asked_at, new_deadline=granted, reason="x"), asked_at, WALL)
            for c in clocks]
    grant = summons_event(ExtensionGranted, decided_at, new_deadline=granted)
    report, resolve = (apply(c, grant, decided_at, WALL) for c in held)
    assert resolve.deadline == granted and resolve.state == "running"
    assert report.state == "running" and report.deadline == decided_at + 40 * MIN  # the 40 minutes it had left
    refused = [apply(c, summons_event(ExtensionRefused, decided_at), decided_at, WALL) for c in held]
    assert [c.deadline for c in refused] == [decided_at + 40 * MIN, decided_at + 24 * HOUR - 10 * MIN]
    resumed = [apply(c, summons_event(SummonsResumed, decided_at), decided_at, WALL) for c in held]
    assert [c.deadline for c in resumed] == [c.deadline for c in refused]


def test_an_event_without_an_effect_leaves_the_clock_as_it_is():
    clock = report_clock()
    assert apply(clock, issued(NOW + MIN), NOW + MIN, WALL) is clock


def test_the_superior_level_without_a_superior_goes_to_street_command():
    summons = issued().model_copy(update={"superior_id": None})
    [clock] = start_clocks(summons, tier_policy(warn_at=None), WALL)
    _, events = fire(clock, clock.generation, DEADLINE + HOUR, WALL)
    assert raised(events)[1] == (2, 1, "superior", STREET_COMMAND)


# --- working time ---------------------------------------------------------------------------------------


def beijing(*args: int) -> datetime:
    return datetime(*args, tzinfo=BEIJING)


def working_clock(at: datetime) -> Clock:
    return report_clock(tier_policy(basis="working", report_within="3h"), at=at, cw=WORKING)


def test_working_time_skips_the_weekend_but_counts_the_makeup_sunday():
    # Fri 26 Sep 2025 16:00-17:30 counts 1h30; Sat 27 is off; Sun 28 is a make-up working day (调休补班)
    # from 08:30, so the remaining 1h30 ends at 10:00. The warning (2h24) is 54 minutes into Sunday.
    clock = working_clock(beijing(2025, 9, 26, 16, 0))
    assert clock.deadline == beijing(2025, 9, 28, 10, 0)
    assert clock.fire_at == beijing(2025, 9, 28, 9, 24)
    clock, events = fire(clock, clock.generation, beijing(2025, 9, 27, 12, 0), WORKING)  # Saturday
    assert events == [] and clock.fire_at == beijing(2025, 9, 28, 9, 24)
    clock, events = fire(clock, clock.generation, beijing(2025, 9, 28, 9, 24), WORKING)
    assert kinds(events) == [SlaWarned]
    clock, events = fire(clock, clock.generation, beijing(2025, 9, 28, 10, 0), WORKING)
    assert kinds(events) == [SlaBreached] and events[0].deadline == beijing(2025, 9, 28, 10, 0)
    assert clock.fire_at == beijing(2025, 9, 28, 10, 10)  # the ladder waits in wall time


def test_working_time_pause_and_resume_carry_the_working_time_left():
    clock = working_clock(beijing(2025, 9, 26, 16, 0))
    paused = pause(clock, beijing(2025, 9, 26, 17, 0), WORKING)
    assert paused.consumed == HOUR
    # the make-up Sunday passes paused: nothing runs, two working hours left
    assert paused.segment_started_at is None and paused.budget - paused.consumed == 2 * HOUR
    resumed = resume(paused, beijing(2025, 9, 29, 9, 0), WORKING)  # Monday
    assert resumed.deadline == beijing(2025, 9, 29, 11, 0)
    assert resumed.fire_at == beijing(2025, 9, 29, 10, 24)  # 1h24 of working time to the warning point


@pytest.mark.parametrize(("granted_at", "granted"), [
    # granted on Friday evening until Monday's opening: no working time lies in between
    (beijing(2026, 3, 6, 19, 0), beijing(2026, 3, 9, 8, 30)),
    # granted at Friday's closing until Monday 13:00: the working time runs out at Monday's lunch break
    (beijing(2026, 3, 6, 17, 0), beijing(2026, 3, 9, 13, 0)),
])
def test_a_working_time_extension_does_not_breach_before_the_granted_deadline(granted_at, granted):
    clock = report_clock(tier_policy(basis="working", warn_at=None), at=beijing(2026, 3, 6, 16, 0), cw=WORKING)
    extended = extend(clock, granted, granted_at, WORKING)
    assert extended.deadline == granted
    extended, events = fire(extended, extended.generation, beijing(2026, 3, 7, 10, 0), WORKING)  # Saturday
    assert events == []
    _, events = fire(extended, extended.generation, granted, WORKING)
    assert [(type(e), e.deadline) for e in events] == [(SlaBreached, granted)]


# --- any sequence of operations -------------------------------------------------------------------------

PROPERTY_POLICY = tier_policy(report_within="30m", ladder=[
    {"level": "responder", "after": "0s"}, {"level": "superior", "after": "10m"},
], ladder_repeats=1)
operations = st.lists(
    st.tuples(
        st.sampled_from(["fire", "fire_when_due", "stale_fire", "pause", "resume", "stop", "extend"]),
        st.integers(min_value=0, max_value=90 * 60) | st.integers(min_value=0, max_value=3 * 86400),
        st.integers(min_value=0, max_value=20),
    ),
    max_size=25,
)


def _step_due(deadline: datetime, ladder, step: int) -> datetime:
    waits = islice(cycle(s.after for s in ladder), step)
    return deadline + sum(waits, timedelta(0))


@settings(max_examples=300)
@given(ops=operations, cw=st.sampled_from([WALL, WORKING]))
def test_any_sequence_of_operations_keeps_the_clock_honest(ops, cw):
    """Generations never go back; warnings, breaches and steps come once each, in order, never early."""
    now = NOW
    clock = report_clock(PROPERTY_POLICY, at=now, cw=cw)
    seen_generations = [clock.generation]
    running_since: datetime | None = now  # the open running stretch of this period
    used = timedelta(0)  # running time of closed stretches of this period
    period: list[Event] = []  # events since the start or the last extension
    granted = NOW  # the last extension's deadline

    for op, advance, pick in ops:
        now += timedelta(seconds=advance)
        before = clock
        if op == "fire_when_due" and clock.pending:
            now = max(now, clock.fire_at)
        if op in ("fire", "fire_when_due", "stale_fire"):
            generation = clock.generation
            if op == "stale_fire":
                generation = seen_generations[pick % len(seen_generations)] - (1 if pick % 2 else 0)
                if generation == clock.generation:
                    generation -= 1
            clock, events = fire(clock, generation, now, cw)
            if generation != before.generation:
                assert (clock, events) == (before, [])
        else:
            events = []
            if op == "pause":
                clock = pause(clock, now, cw)
            elif op == "resume":
                clock = resume(clock, now, cw)
            elif op == "stop":
                clock = stop(clock)
            else:
                clock = extend(clock, now + pick * 10 * MIN, now, cw)
                granted = now + pick * 10 * MIN if clock is not before else granted

        # the model of running time, taken from the state changes the domain reports
        if before.state == "running" and clock.state in ("paused", "stopped") and running_since is not None:
            used += cw.between(running_since, now)
            running_since = None
        if before.state == "paused" and clock.state == "running":
            running_since = now
        if op == "extend" and clock is not before:
            period, used, running_since = [], timedelta(0), now
        used_now = used + (cw.between(running_since, now) if running_since is not None else timedelta(0))

        assert clock.generation >= before.generation  # (a)
        seen_generations.append(clock.generation)
        for event in events:
            assert event.occurred_at == now
            if isinstance(event, SlaWarned):
                assert used_now >= clock.budget * clock.warn_at  # (d) never early
                assert not any(isinstance(e, SlaBreached | SlaWarned) for e in period)  # (c)
            elif isinstance(event, SlaBreached):
                assert now >= event.deadline >= granted and used_now >= clock.budget  # (d)
                assert not any(isinstance(e, SlaBreached) for e in period)  # (c)
            else:
                assert isinstance(event, EscalationRaised)
                [breach] = [e for e in period if isinstance(e, SlaBreached)]
                assert now >= _step_due(breach.deadline, clock.ladder, event.step)  # (d)
            period.append(event)
        steps = [e.step for e in period if isinstance(e, EscalationRaised)]
        assert steps == list(range(1, len(steps) + 1))  # (b) consecutive from 1, none repeated
        assert len(steps) <= len(clock.ladder) * (1 + clock.ladder_repeats)


# --- evolving and restoring clocks (the fast paths beside dataclasses) --------------------------------


def test_evolve_changes_only_what_it_is_given_and_leaves_the_original_alone():
    from dataclasses import asdict, replace

    from services.escalation.domain import evolve

    clock = report_clock()
    before = asdict(clock)
    later = evolve(clock, state="paused", generation=clock.generation + 1)
    assert later == replace(clock, state="paused", generation=clock.generation + 1)
    assert asdict(clock) == before and later is not clock


def test_evolve_refuses_fields_a_running_clock_must_keep():
    from services.escalation.domain import evolve

    with pytest.raises(TypeError, match="responder_id"):
        evolve(report_clock(), responder_id="someone-else")
    with pytest.raises(TypeError, match="no_such_field"):
        evolve(report_clock(), no_such_field=1)


def test_restore_rebuilds_an_equal_clock_from_every_field_and_refuses_missing_ones():
    from dataclasses import asdict

    from services.escalation.domain import restore

    clock = report_clock()
    values = {name: getattr(clock, name) for name in asdict(clock)}
    assert restore(values) == clock
    values.pop("tier")
    with pytest.raises(TypeError, match="tier"):
        restore(values)
