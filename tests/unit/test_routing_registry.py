"""The responder registry: availability windows in Beijing time, indexes, and refusing a bad file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.routing.registry import BEIJING, Registry, Responder, Window, load_registry
from shared.contracts import ResponderKind

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
# 2026-03-06 is a Friday; 11:00 UTC is 19:00 in Beijing (UTC+8, no daylight saving)
FRIDAY_19_BEIJING = datetime(2026, 3, 6, 11, 0, tzinfo=UTC)


def beijing(day: int, hour: int, minute: int = 0) -> datetime:
    """A UTC instant that is `day` (0 = Monday, week of 2 March 2026) at hour:minute in Beijing."""
    return datetime(2026, 3, 2 + day, hour, minute, tzinfo=BEIJING).astimezone(UTC)


def member(rid: str, building: str | None = "1", **extra) -> Responder:
    return Responder(id=rid, kind=ResponderKind.member, name_en=rid, name_zh=rid, building=building, **extra)


def unit(rid: str, kind: ResponderKind = ResponderKind.department, **extra) -> Responder:
    return Responder(id=rid, kind=kind, name_en=rid, name_zh=rid, **extra)


# --- Window.parse -------------------------------------------------------------------


def test_parse_weekday_evenings():
    w = Window.parse("mon-fri 18:00-21:00")
    assert w.days == {MON, TUE, WED, THU, FRI}
    assert (w.start, w.end) == (time(18, 0), time(21, 0))


def test_parse_weekend_days():
    w = Window.parse("sat-sun 09:00-18:00")
    assert w.days == {SAT, SUN}
    assert (w.start, w.end) == (time(9, 0), time(18, 0))


def test_parse_all_week_all_day_ends_at_midnight():
    w = Window.parse("mon-sun 00:00-24:00")
    assert w.days == set(range(7))
    assert (w.start, w.end) == (time(0, 0), None)


def test_parse_a_single_day():
    assert Window.parse("wed 10:00-11:30").days == {WED}


def test_parse_tolerates_surrounding_whitespace():
    assert Window.parse("  mon-fri 18:00-21:00\n") == Window.parse("mon-fri 18:00-21:00")


@pytest.mark.parametrize(("text", "days"), [
    ("fri-mon 18:00-21:00", {FRI, SAT, SUN, MON}),
    ("sun-mon 08:00-12:00", {SUN, MON}),
    ("sat-fri 08:00-12:00", set(range(7))),
])
def test_a_day_range_wraps_around_the_end_of_the_week(text, days):
    assert Window.parse(text).days == days


def test_a_wrapped_window_covers_its_days_only():
    w = Window.parse("fri-mon 18:00-21:00")
    assert w.covers(beijing(FRI, 19)) and w.covers(beijing(SUN, 19)) and w.covers(beijing(MON, 19))
    assert not w.covers(beijing(TUE, 19)) and not w.covers(beijing(THU, 19))


@pytest.mark.parametrize("text", [
    "",
    "mon-fri",
    "18:00-21:00",
    "Mon-Fri 18:00-21:00",
    "weekdays 18:00-21:00",
    "mon-fri 8:00-12:00",
    "mon-fri 18:00 - 21:00",
    "mon-fri  18:00-21:00",
    "mon-fri 18:00-21:00, sat 09:00-12:00",
    "mon-xyz 18:00-21:00",
    "mon-fri 21:00-18:00",   # ends before it starts
    "mon-fri 18:00-18:00",   # empty
    "mon-fri 22:00-02:00",   # overnight: write it as two windows
    "mon-fri 18:00-24:01",
    "mon-fri 18:00-25:00",
    "mon-fri 18:60-21:00",
    "mon-fri 18:00-20:75",
    "mon-sun 24:00-24:00",
])
def test_bad_windows_raise_value_error(text):
    with pytest.raises(ValueError):
        Window.parse(text)


# --- Window.covers, in Beijing time ----------------------------------------------------


def test_a_utc_instant_that_is_friday_evening_in_beijing_is_inside_weekday_evenings():
    assert FRIDAY_19_BEIJING.weekday() == FRI and FRIDAY_19_BEIJING.hour == 11
    assert Window.parse("mon-fri 18:00-21:00").covers(FRIDAY_19_BEIJING)


def test_covers_uses_beijing_time_not_utc():
    # Friday 12:30 UTC is 20:30 in Beijing: inside, though 12:30 is outside the window;
    # Friday 19:00 UTC is 03:00 Saturday in Beijing: outside, though 19:00 is inside
    w = Window.parse("mon-fri 18:00-21:00")
    assert w.covers(datetime(2026, 3, 6, 12, 30, tzinfo=UTC))
    assert not w.covers(datetime(2026, 3, 6, 19, 0, tzinfo=UTC))


def test_friday_evening_utc_is_already_saturday_in_beijing():
    friday_17_utc = datetime(2026, 3, 6, 17, 0, tzinfo=UTC)  # Saturday 01:00 in Beijing
    assert Window.parse("sat-sun 00:00-02:00").covers(friday_17_utc)
    assert not Window.parse("mon-fri 00:00-24:00").covers(friday_17_utc)


def test_covers_accepts_any_aware_timezone():
    same_instant = FRIDAY_19_BEIJING.astimezone(timezone(timedelta(hours=-5)))  # 06:00 Friday in UTC-5
    assert Window.parse("mon-fri 18:00-21:00").covers(same_instant)


def test_start_is_inclusive_and_end_exclusive():
    w = Window.parse("mon-fri 18:00-21:00")
    assert w.covers(beijing(FRI, 18, 0))
    assert not w.covers(beijing(FRI, 17, 59))
    assert w.covers(beijing(FRI, 20, 59))
    assert not w.covers(beijing(FRI, 21, 0))


def test_a_window_until_24_00_covers_the_last_minute_of_the_day_only():
    w = Window.parse("fri 20:00-24:00")
    assert w.covers(beijing(FRI, 23, 59))
    assert not w.covers(beijing(SAT, 0, 0))


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_mon_sun_all_day_covers_every_instant(moment):
    assert Window.parse("mon-sun 00:00-24:00").covers(moment)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_covers_agrees_with_the_beijing_wall_clock(moment):
    local = moment.astimezone(BEIJING)
    expected = local.weekday() < SAT and time(18) <= local.time() < time(21)
    assert Window.parse("mon-fri 18:00-21:00").covers(moment) is expected


# --- Responder.available --------------------------------------------------------------


def test_an_empty_availability_means_always_available():
    r = member("m-1")
    assert r.availability == ()
    for day in range(7):
        for hour in (0, 3, 12, 23):
            assert r.available(beijing(day, hour))


def test_available_in_any_of_several_windows():
    r = member("m-1", availability=(Window.parse("mon-fri 18:00-21:00"), Window.parse("sat-sun 09:00-18:00")))
    assert r.available(beijing(FRI, 19))
    assert r.available(beijing(SAT, 10))
    assert not r.available(beijing(FRI, 10))
    assert not r.available(beijing(SUN, 19))


# --- Registry -----------------------------------------------------------------------


def test_registry_indexes_active_members_by_building_and_grid():
    registry = Registry(
        {r.id: r for r in [
            member("a", "1"), member("b", "2"), member("c", "3"), member("nowhere", None),
            member("gone", "1", active=False), unit("d-x"), unit("s-x", ResponderKind.section),
        ]},
        grids={"g1": ("1", "2"), "g2": ("3",)},
    )
    assert registry.grid_of == {"1": "g1", "2": "g1", "3": "g2"}
    assert [m.id for m in registry.by_building["1"]] == ["a"]
    assert sorted(m.id for m in registry.by_grid["g1"]) == ["a", "b"]
    assert [m.id for m in registry.by_grid["g2"]] == ["c"]
    assert sorted(m.id for m in registry.members) == ["a", "b", "c", "nowhere"]
    assert "gone" in registry and "d-x" in registry and "nobody" not in registry
    assert registry["d-x"].kind is ResponderKind.department


def test_registry_refuses_a_dangling_superior():
    with pytest.raises(ValueError, match="'a'.*'ghost'"):
        Registry({"a": member("a", superior_id="ghost")})


# --- load_registry ----------------------------------------------------------------------


def raw(rid: str, **extra) -> dict:
    return {"id": rid, "kind": "member", "name_en": rid, "name_zh": rid, "building": "1", **extra}


def write(tmp_path, responders: list[dict], grids: dict | None = None):
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"grids": grids or {"g1": ["1"]}, "responders": responders}), encoding="utf-8")
    return path


def test_load_registry_reads_a_good_file(tmp_path):
    path = write(tmp_path, [
        raw("boss", availability=["mon-sun 00:00-24:00"], skills=["mediation"], max_concurrent=5),
        raw("a", superior_id="boss"),
    ])
    registry = load_registry(path)
    assert registry["a"].superior_id == "boss"
    assert registry["boss"].skills == {"mediation"}
    assert registry["boss"].availability == (Window.parse("mon-sun 00:00-24:00"),)
    assert registry["boss"].max_concurrent == 5
    assert registry["a"].max_concurrent == 3 and registry["a"].availability == ()
    assert registry.grid_of == {"1": "g1"}


def test_load_registry_refuses_a_dangling_superior_naming_the_file(tmp_path):
    path = write(tmp_path, [raw("a", superior_id="ghost")])
    with pytest.raises(ValueError) as err:
        load_registry(path)
    assert str(path) in str(err.value)
    assert "ghost" in str(err.value)


def test_load_registry_refuses_a_bad_window_naming_the_file(tmp_path):
    path = write(tmp_path, [raw("a", availability=["mon-fri 21:00-18:00"])])
    with pytest.raises(ValueError) as err:
        load_registry(path)
    assert str(path) in str(err.value)
    assert "mon-fri 21:00-18:00" in str(err.value)


def test_load_registry_refuses_an_unknown_kind_naming_the_file(tmp_path):
    path = write(tmp_path, [raw("a", kind="volunteer")])
    with pytest.raises(ValueError, match="registry.json"):
        load_registry(path)


def test_load_registry_refuses_a_responder_without_an_id_naming_the_file(tmp_path):
    path = write(tmp_path, [{"kind": "member", "name_en": "x", "name_zh": "x"}])
    with pytest.raises(ValueError, match="registry.json"):
        load_registry(path)
