"""Working-time calendar of a Beijing street office: hand-counted deadlines for 2025 and 2026.

Default office day: 08:30-12:00 and 13:30-17:30, i.e. 7.5 h; "n working days" is n x 7.5 h.
Holiday and make-up dates below are those of ``holidays.China`` (checked in the first test).
"""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.escalation.calendar import CalendarSpec, Clockwork, WallClock, WorkingCalendar

BJ = ZoneInfo("Asia/Shanghai")
DAY = timedelta(hours=7.5)
CAL = CalendarSpec().build()


def bj(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=BJ)


def hours(h: float) -> timedelta:
    return timedelta(hours=h)


# -- the library's data these tests count on ------------------------------------------------


@pytest.mark.parametrize(
    ("day", "working"),
    [
        # 2025 National Day + Mid-Autumn: 10-01..10-08 off, make-up Sun 09-28 and Sat 10-11
        (date(2025, 9, 27), False),
        (date(2025, 9, 28), True),
        *[(date(2025, 10, d), False) for d in range(1, 9)],
        (date(2025, 10, 9), True),
        (date(2025, 10, 11), True),
        # 2026 Spring Festival: weekdays 02-16..02-20 and 02-23 off, make-up Sat 02-14 and Sat 02-28
        (date(2026, 2, 14), True),
        (date(2026, 2, 15), False),
        *[(date(2026, 2, d), False) for d in (16, 17, 18, 19, 20, 21, 22, 23)],
        (date(2026, 2, 24), True),
        (date(2026, 2, 28), True),
        # 2026 National Day: 10-01..10-07 off, make-up Sun 09-20 and Sat 10-10
        (date(2026, 9, 20), True),
        *[(date(2026, 10, d), False) for d in range(1, 8)],
        (date(2026, 10, 8), True),
        (date(2026, 10, 10), True),
    ],
)
def test_working_days_follow_chinas_official_calendar(day: date, working: bool) -> None:
    assert holidays.China(years=day.year).is_working_day(day) is working
    assert CAL.is_working_day(day) is working


# -- add: hand-counted deadlines ------------------------------------------------------------


def test_three_working_days_before_national_day_2025_end_on_tuesday_30th() -> None:
    # Fri 26th 10:00-12:00 + 13:30-17:30 = 6 h (16.5 h left); Sat 27th off; Sun 28th is a
    # make-up day, 7.5 h (9 h left); Mon 29th 7.5 h (1.5 h left); Tue 30th 08:30 + 1.5 h = 10:00.
    due = CAL.add(bj(2025, 9, 26, 10), 3 * DAY)
    assert due == datetime(2025, 9, 30, 2, 0, tzinfo=UTC)
    assert due.utcoffset() == timedelta(0)


def test_five_working_days_jump_the_national_day_week() -> None:
    # As above, 9 h are left after Tue 30th; 10-01..10-08 off; Thu 9th 7.5 h; Fri 10th 08:30 + 1.5 h.
    assert CAL.add(bj(2025, 9, 26, 10), 5 * DAY) == bj(2025, 10, 10, 10)


def test_make_up_saturday_after_national_day_2025_counts() -> None:
    # Six working days: 1.5 h are left after Fri 10th; Sat 11th is a make-up day.
    assert CAL.add(bj(2025, 9, 26, 10), 6 * DAY) == bj(2025, 10, 11, 10)


@pytest.mark.parametrize(
    ("start", "due"),
    [
        (bj(2025, 3, 14, 16), bj(2025, 3, 17, 11)),  # Fri 16:00-17:30 = 1.5 h, Mon 08:30 + 2.5 h
        (bj(2026, 3, 13, 16), bj(2026, 3, 16, 11)),
    ],
)
def test_four_hours_from_friday_afternoon_end_on_monday(start: datetime, due: datetime) -> None:
    assert CAL.add(start, hours(4)) == due


def test_friday_before_spring_festival_2026_runs_into_the_make_up_saturday() -> None:
    # Fri 02-13 16:00-17:30 = 1.5 h; Sat 02-14 is a make-up day: 08:30 + 2.5 h.
    assert CAL.add(bj(2026, 2, 13, 16), hours(4)) == bj(2026, 2, 14, 11)


def test_spring_festival_2026_pauses_the_clock_for_nine_days() -> None:
    # Sat 02-14 17:00-17:30 = 0.5 h; 02-15..02-23 off; Tue 02-24 08:30 + 0.5 h.
    assert CAL.add(bj(2026, 2, 14, 17), hours(1)) == bj(2026, 2, 24, 9)
    # One working day from Sat 02-14 10:00: 6 h that day, 1.5 h on Tue 02-24.
    assert CAL.add(bj(2026, 2, 14, 10), DAY) == bj(2026, 2, 24, 10)


def test_make_up_saturday_28_february_2026_counts() -> None:
    assert CAL.add(bj(2026, 2, 27, 17), hours(1)) == bj(2026, 2, 28, 9)


def test_national_day_2026_with_make_up_days_on_both_sides() -> None:
    # Fri 09-18 17:00-17:30 = 0.5 h; Sun 09-20 is a make-up day: 08:30 + 0.5 h.
    assert CAL.add(bj(2026, 9, 18, 17), hours(1)) == bj(2026, 9, 20, 9)
    # Wed 09-30 17:00-17:30 = 0.5 h; 10-01..10-07 off; Thu 10-08 7.5 h; Fri 10-09 7.5 h; Sat 10-10 09:00.
    assert CAL.add(bj(2026, 9, 30, 17), hours(16)) == bj(2026, 10, 10, 9)


@pytest.mark.parametrize(
    ("start", "due"),
    [
        (bj(2025, 3, 17, 7), bj(2025, 3, 17, 9, 30)),  # before opening: counts from 08:30
        (bj(2025, 3, 17, 12, 30), bj(2025, 3, 17, 14, 30)),  # lunch: counts from 13:30
        (bj(2025, 3, 17, 12), bj(2025, 3, 17, 14, 30)),  # exactly at the lunch closing
        (bj(2025, 3, 17, 18), bj(2025, 3, 18, 9, 30)),  # after closing: next morning
        (bj(2025, 10, 1, 10), bj(2025, 10, 9, 9, 30)),  # on a holiday: first day after it
        (bj(2025, 3, 17, 16, 30), bj(2025, 3, 17, 17, 30)),  # ends at closing, not next morning
    ],
)
def test_one_hour_from_outside_or_at_the_edge_of_office_hours(start: datetime, due: datetime) -> None:
    assert CAL.add(start, hours(1)) == due


def test_a_morning_of_work_ends_at_noon_not_after_lunch() -> None:
    assert CAL.add(bj(2025, 3, 17, 8, 30), hours(3.5)) == bj(2025, 3, 17, 12)


def test_zero_duration_returns_start_in_utc_even_outside_hours() -> None:
    for start in (bj(2025, 3, 17, 10), bj(2025, 10, 1, 3)):
        due = CAL.add(start, timedelta(0))
        assert due == start
        assert due.tzinfo is UTC


def test_add_refuses_naive_start_and_negative_duration() -> None:
    with pytest.raises(ValueError, match="time zone"):
        CAL.add(datetime(2025, 3, 17, 10), hours(1))
    with pytest.raises(ValueError, match="negative"):
        CAL.add(bj(2025, 3, 17, 10), hours(-1))


# -- closures, extra working days, custom hours ----------------------------------------------


def test_local_closure_skips_a_day() -> None:
    cal = CalendarSpec(closures=[date(2025, 3, 18)]).build()
    assert not cal.is_working_day(date(2025, 3, 18))
    assert cal.hours_on(date(2025, 3, 18)) == []
    # Mon 17:00-17:30 = 0.5 h; Tue closed; Wed 08:30 + 0.5 h.
    assert cal.add(bj(2025, 3, 17, 17), hours(1)) == bj(2025, 3, 19, 9)


def test_extra_working_day_adds_a_saturday_with_make_up_hours() -> None:
    cal = CalendarSpec(extra_working_days=[date(2025, 3, 22)], makeup_day_hours=["09:00-12:00"]).build()
    assert cal.hours_on(date(2025, 3, 22)) == [(time(9), time(12))]
    # Fri 17:00-17:30 = 0.5 h; Sat 09:00 + 0.5 h.
    assert cal.add(bj(2025, 3, 21, 17), hours(1)) == bj(2025, 3, 22, 9, 30)


def test_extra_working_day_on_a_holiday_keeps_the_weekday_hours() -> None:
    cal = CalendarSpec(extra_working_days=[date(2025, 10, 1)]).build()
    assert cal.hours_on(date(2025, 10, 1)) == [(time(8, 30), time(12)), (time(13, 30), time(17, 30))]
    assert cal.add(bj(2025, 9, 30, 17), hours(1)) == bj(2025, 10, 1, 9)


def test_hours_on_each_kind_of_day() -> None:
    office_day = [(time(8, 30), time(12)), (time(13, 30), time(17, 30))]
    assert CAL.hours_on(date(2025, 3, 17)) == office_day  # ordinary Monday
    assert CAL.hours_on(date(2025, 3, 15)) == []  # ordinary Saturday
    assert CAL.hours_on(date(2025, 9, 28)) == office_day  # make-up Sunday
    assert CAL.hours_on(date(2025, 10, 6)) == []  # Mid-Autumn Festival, a Monday
    short_makeup = CalendarSpec(makeup_day_hours=["09:00-12:00"]).build()
    assert short_makeup.hours_on(date(2025, 10, 11)) == [(time(9), time(12))]
    assert short_makeup.hours_on(date(2025, 10, 10)) == office_day


def test_office_with_saturday_hours_still_closes_on_a_saturday_holiday() -> None:
    cal = CalendarSpec(office_hours={"mon": ["08:30-17:30"], "sat": ["09:00-12:00"]}).build()
    assert cal.hours_on(date(2026, 3, 14)) == [(time(9), time(12))]  # ordinary Saturday
    assert cal.hours_on(date(2026, 5, 2)) == []  # Labour Day falls on Saturday
    assert not cal.is_working_day(date(2026, 3, 17))  # Tuesday: no hours set


# -- between ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "elapsed"),
    [
        (bj(2025, 9, 26, 10), bj(2025, 9, 30, 10), 3 * DAY),
        (bj(2025, 9, 26, 10), bj(2025, 10, 10, 10), 5 * DAY),
        (bj(2025, 9, 26, 10), bj(2025, 10, 11, 10), 6 * DAY),
        (bj(2025, 10, 1), bj(2025, 10, 9), timedelta(0)),  # the whole holiday
        (bj(2025, 3, 14, 16), bj(2025, 3, 17, 11), hours(4)),
        (bj(2026, 2, 14, 17), bj(2026, 2, 24, 9), hours(1)),
        (bj(2025, 3, 17, 12), bj(2025, 3, 17, 13, 30), timedelta(0)),  # lunch
        (bj(2025, 3, 17, 7), bj(2025, 3, 17, 9, 30), hours(1)),
        (bj(2025, 3, 17, 10), bj(2025, 3, 17, 10), timedelta(0)),
        (bj(2025, 3, 18, 10), bj(2025, 3, 17, 10), timedelta(0)),  # end before start
    ],
)
def test_between_counts_only_working_time(start: datetime, end: datetime, elapsed: timedelta) -> None:
    assert CAL.between(start, end) == elapsed


def test_between_honours_closures() -> None:
    cal = CalendarSpec(closures=[date(2025, 3, 18)]).build()
    assert cal.between(bj(2025, 3, 17, 17), bj(2025, 3, 19, 9)) == hours(1)


working_time = st.timedeltas(min_value=timedelta(0), max_value=30 * DAY)
starts = st.datetimes(
    min_value=datetime(2025, 1, 1),
    max_value=datetime(2026, 12, 31, 23, 59, 59),
    timezones=st.sampled_from([BJ, UTC, ZoneInfo("America/New_York")]),
)


@given(start=starts, duration=working_time)
def test_between_inverts_add(start: datetime, duration: timedelta) -> None:
    assert CAL.between(start, CAL.add(start, duration)) == duration


@given(start=starts, a=working_time, b=working_time)
def test_add_is_monotonic_and_additive(start: datetime, a: timedelta, b: timedelta) -> None:
    shorter, longer = sorted((a, b))
    assert CAL.add(start, shorter) <= CAL.add(start, longer)
    assert CAL.add(CAL.add(start, a), b) == CAL.add(start, a + b)


def test_a_year_of_working_time_round_trips() -> None:
    # speed is for bench/, not tests: this checks a long span stays exact
    start, duration = bj(2025, 1, 15, 10), timedelta(days=365)  # about 4.7 years of office days
    due = CAL.add(start, duration)
    assert CAL.between(start, due) == duration


# -- time zones -------------------------------------------------------------------------------


def test_a_utc_start_is_read_in_beijing_time_and_the_result_is_utc() -> None:
    # Sunday 23:00 UTC is Monday 07:00 in Beijing: counting starts Monday 08:30.
    due = CAL.add(datetime(2025, 3, 16, 23, 0, tzinfo=UTC), hours(1))
    assert due == datetime(2025, 3, 17, 1, 30, tzinfo=UTC)
    assert due.tzinfo is UTC
    new_york = datetime(2025, 3, 16, 19, 0, tzinfo=ZoneInfo("America/New_York"))  # same instant
    assert CAL.add(new_york, hours(1)) == due


def test_office_hours_are_local_to_the_spec_time_zone() -> None:
    cal = CalendarSpec(timezone="Europe/Berlin").build()
    # Mon 2025-03-17 08:00 UTC is 09:00 in Berlin (CET): 1 h later is 10:00 Berlin, 09:00 UTC.
    assert cal.add(datetime(2025, 3, 17, 8, tzinfo=UTC), hours(1)) == datetime(2025, 3, 17, 9, tzinfo=UTC)


# -- wall clock ------------------------------------------------------------------------------


def test_wall_clock_counts_every_instant() -> None:
    wall = WallClock()
    due = wall.add(bj(2025, 10, 1, 10), hours(48))
    assert due == bj(2025, 10, 3, 10)
    assert due.tzinfo is UTC
    assert wall.between(bj(2025, 10, 1, 10), bj(2025, 10, 3, 10)) == hours(48)
    assert wall.between(bj(2025, 10, 3), bj(2025, 10, 1)) == timedelta(0)
    assert wall.is_working_day(date(2025, 10, 1))


def test_both_clocks_are_clockwork() -> None:
    assert isinstance(WallClock(), Clockwork)
    assert isinstance(CAL, Clockwork)
    assert isinstance(CAL, WorkingCalendar)


# -- the policy file's calendar section ------------------------------------------------------


def test_spec_round_trips_through_json() -> None:
    text = """{"timezone": "Asia/Shanghai", "office_hours": {"mon": ["09:00-12:00", "13:00-17:00"]},
               "makeup_day_hours": ["09:00-17:00"], "closures": ["2025-03-18"], "extra_working_days": []}"""
    spec = CalendarSpec.model_validate_json(text)
    assert spec.closures == [date(2025, 3, 18)]
    assert CalendarSpec.model_validate_json(spec.model_dump_json()) == spec
    assert CalendarSpec.model_validate_json(CalendarSpec().model_dump_json()) == CalendarSpec()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"office_hours": {"mon": ["25:00-26:00"]}}, "mon: '25:00-26:00': 25:00 is not a time of day"),
        ({"office_hours": {"tue": ["12:00-08:30"]}}, "tue: '12:00-08:30': the end must be after the start"),
        ({"office_hours": {"wed": ["08:30-08:30"]}}, "the end must be after the start"),
        ({"office_hours": {"thu": ["08:30-12:00", "11:00-13:00"]}}, "'08:30-12:00' and '11:00-13:00' overlap"),
        ({"office_hours": {"fri": ["8.30 to 12"]}}, "is not an interval like '08:30-12:00'"),
        ({"office_hours": {"mon": []}}, "the office is never open"),
        ({"office_hours": {"monday": ["08:30-12:00"]}}, "'mon', 'tue'"),
        ({"makeup_day_hours": ["09:60-12:00"]}, "09:60 is not a time of day"),
        ({"timezone": "Mars/Olympus_Mons"}, "unknown time zone 'Mars/Olympus_Mons'"),
        ({"timezone": ""}, "unknown time zone"),
        ({"closures": [date(2025, 3, 18)], "extra_working_days": [date(2025, 3, 18)]}, "both closed and working"),
        ({"holidays": []}, "Extra inputs are not permitted"),
    ],
)
def test_spec_errors_name_the_problem(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CalendarSpec(**fields)


def test_a_calendar_without_any_office_hours_is_refused() -> None:
    never_open = ((),) * 7
    with pytest.raises(ValueError, match="never open"):
        WorkingCalendar(tz=BJ, weekly=never_open, makeup_hours=())
