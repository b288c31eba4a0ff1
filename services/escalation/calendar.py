"""Working time of a Beijing street office: office hours, public holidays and make-up days (调休补班).

A policy with ``basis: working`` counts its deadlines in the office's working time instead of
wall time. Public holidays and the weekend days China makes working days come from the
``holidays`` library (``holidays.China``), never from a table kept here; the policy file adds
local closures and extra working days. Everything is pure: the caller passes the instants.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OFFICE_DAY = ["08:30-12:00", "13:30-17:30"]
ZERO = timedelta(0)
_ONE_DAY = timedelta(days=1)
_INTERVAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

Hours = tuple[tuple[time, time], ...]


@runtime_checkable
class Clockwork(Protocol):
    """What the escalation domain needs from a clock basis: deadlines forward, elapsed time back."""

    def add(self, start: datetime, duration: timedelta) -> datetime: ...

    def between(self, start: datetime, end: datetime) -> timedelta: ...


def parse_hours(intervals: list[str]) -> Hours:
    """Parse ['08:30-12:00', ...] into sorted (open, close) pairs; overlaps and bad times raise ValueError."""
    parsed: list[tuple[time, time, str]] = []
    for text in intervals:
        match = _INTERVAL.match(text)
        if not match:
            raise ValueError(f"{text!r} is not an interval like '08:30-12:00'")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        for h, m in ((h1, m1), (h2, m2)):
            if h > 23 or m > 59:
                raise ValueError(f"{text!r}: {h:02d}:{m:02d} is not a time of day (00:00-23:59)")
        start, end = time(h1, m1), time(h2, m2)
        if end <= start:
            raise ValueError(f"{text!r}: the end must be after the start")
        parsed.append((start, end, text))
    parsed.sort()
    for (_, prev_end, prev), (start, _, text) in zip(parsed, parsed[1:], strict=False):
        if start < prev_end:
            raise ValueError(f"{prev!r} and {text!r} overlap")
    return tuple((start, end) for start, end, _ in parsed)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; pass an aware datetime")
    return moment.astimezone(UTC)


@cache
def _china(year: int) -> holidays.HolidayBase:
    return holidays.China(years=year)


class CalendarSpec(BaseModel):
    """The working calendar as the policy file holds it."""

    model_config = ConfigDict(extra="forbid")
    timezone: str = Field(default="Asia/Shanghai", description="IANA time zone of the office hours")
    office_hours: dict[Weekday, list[str]] = Field(
        default_factory=lambda: {day: list(OFFICE_DAY) for day in WEEKDAYS[:5]},
        description="Opening intervals per weekday / 办公时间; a day left out is closed",
    )
    makeup_day_hours: list[str] = Field(
        default_factory=lambda: list(OFFICE_DAY),
        description="Hours on a weekend day China makes a working day / 调休补班",
    )
    closures: list[date] = Field(default_factory=list, description="Extra local whole days off")
    extra_working_days: list[date] = Field(default_factory=list, description="Extra local working days")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (expected an IANA name like 'Asia/Shanghai')") from None
        return value

    @field_validator("office_hours")
    @classmethod
    def _valid_office_hours(cls, value: dict[Weekday, list[str]]) -> dict[Weekday, list[str]]:
        for day, intervals in value.items():
            try:
                parse_hours(intervals)
            except ValueError as exc:
                raise ValueError(f"{day}: {exc}") from None
        if not any(value.values()):
            raise ValueError("the office is never open: give at least one day some hours")
        return value

    @field_validator("makeup_day_hours")
    @classmethod
    def _valid_makeup_hours(cls, value: list[str]) -> list[str]:
        parse_hours(value)
        return value

    @model_validator(mode="after")
    def _no_contradiction(self) -> CalendarSpec:
        both = sorted(set(self.closures) & set(self.extra_working_days))
        if both:
            raise ValueError(f"day(s) both closed and working: {[d.isoformat() for d in both]}")
        return self

    def build(self) -> WorkingCalendar:
        """The calendar this spec describes."""
        return WorkingCalendar(
            tz=ZoneInfo(self.timezone),
            weekly=tuple(parse_hours(self.office_hours.get(day, [])) for day in WEEKDAYS),
            makeup_hours=parse_hours(self.makeup_day_hours),
            closures=frozenset(self.closures),
            extra_working_days=frozenset(self.extra_working_days),
        )


class WorkingCalendar:
    """Counts working time: office hours on working days, in the office's time zone."""

    def __init__(
        self,
        *,
        tz: ZoneInfo,
        weekly: tuple[Hours, ...],
        makeup_hours: Hours,
        closures: frozenset[date] = frozenset(),
        extra_working_days: frozenset[date] = frozenset(),
    ) -> None:
        if not any(weekly):
            raise ValueError("the office is never open: give at least one day some hours")  # add() would never end
        self._tz = tz
        self._weekly = weekly
        self._makeup_hours = makeup_hours
        self._closures = closures
        self._extra = extra_working_days
        # Per local day: its open intervals as UTC instants, and their total length.
        self._spans: dict[date, tuple[tuple[tuple[datetime, datetime], ...], timedelta]] = {}

    def is_working_day(self, d: date) -> bool:
        """Whether the office works on this local date (it has office hours that day)."""
        return bool(self.hours_on(d))

    def hours_on(self, d: date) -> list[tuple[time, time]]:
        """The office's local opening intervals on this date; [] on a day off."""
        weekly = self._weekly[d.weekday()]
        if d in self._closures:
            return []
        if d in self._extra:
            return list(weekly or self._makeup_hours)
        china = _china(d.year)
        if china.is_working_day(d):
            # A working Saturday or Sunday is a make-up day; weekdays keep their usual hours.
            return list(self._makeup_hours if d.weekday() >= 5 else weekly)
        if d in china:
            return []
        return list(weekly)  # an ordinary weekend day: open only if the office keeps weekend hours

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The UTC instant when `duration` of working time has elapsed, counting from `start`."""
        moment = _utc(start)
        if duration < ZERO:
            raise ValueError("a duration cannot be negative")
        if duration == ZERO:
            return moment
        remaining = duration
        day = moment.astimezone(self._tz).date()
        while True:
            spans, total = self._day(day)
            if spans and spans[0][0] >= moment and total < remaining:
                remaining -= total  # the whole day lies after start: skip it in one step
            else:
                for opens, closes in spans:
                    if closes <= moment:
                        continue
                    opens = max(opens, moment)
                    if closes - opens >= remaining:
                        return opens + remaining
                    remaining -= closes - opens
            day += _ONE_DAY

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Working time elapsed in [start, end); zero if end is not after start."""
        lo, hi = _utc(start), _utc(end)
        if hi <= lo:
            return ZERO
        first, last = lo.astimezone(self._tz).date(), hi.astimezone(self._tz).date()
        elapsed = ZERO
        day = first
        while day <= last:
            spans, total = self._day(day)
            if first < day < last:
                elapsed += total
            else:
                for opens, closes in spans:
                    overlap = min(closes, hi) - max(opens, lo)
                    if overlap > ZERO:
                        elapsed += overlap
            day += _ONE_DAY
        return elapsed

    def _day(self, d: date) -> tuple[tuple[tuple[datetime, datetime], ...], timedelta]:
        cached = self._spans.get(d)
        if cached is None:
            # Convert through UTC so a day with a DST change has its true length.
            spans = tuple(
                (
                    datetime.combine(d, opens, tzinfo=self._tz).astimezone(UTC),
                    datetime.combine(d, closes, tzinfo=self._tz).astimezone(UTC),
                )
                for opens, closes in self.hours_on(d)
            )
            cached = self._spans[d] = (spans, sum((b - a for a, b in spans), ZERO))
        return cached


class WallClock:
    """Wall time: every instant counts (the ``basis: wall`` policies)."""

    def is_working_day(self, d: date) -> bool:
        """Every day counts on the wall clock."""
        return True

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """start + duration, as an aware UTC datetime."""
        if duration < ZERO:
            raise ValueError("a duration cannot be negative")
        return _utc(start) + duration

    def between(self, start: datetime, end: datetime) -> timedelta:
        """end - start, never negative."""
        return max(_utc(end) - _utc(start), ZERO)
