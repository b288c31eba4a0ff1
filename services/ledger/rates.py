"""The three rates (三率: 响应率, 解决率, 满意率) per unit and period, and the red and black lists. Pure.

Everything here is a function of facts folded from events, a period of Beijing calendar dates and
`now`, which the caller passes in: a fact dated after `now` is not known yet. The exact definitions
are in the README, section "The three rates".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.contracts import (
    Event,
    SlaRescheduled,
    SlaStarted,
    SummonsIssued,
    SummonsReported,
    SummonsResolved,
    SummonsReturned,
    SummonsTransferred,
    WhistleClosed,
    WhistleFollowedUp,
)

BEIJING = ZoneInfo("Asia/Shanghai")
COMMUNITY = "community"  # the unit that stands for every summons and whistle of the community
RATE_NAMES = ("response", "resolution", "satisfaction")
# the weights of Beijing's 接诉即办 assessment: response 10 %, resolution 45 %, satisfaction 45 %
DEFAULT_WEIGHTS: dict[str, float] = {"response": 0.1, "resolution": 0.45, "satisfaction": 0.45}
PLEASED = frozenset({"satisfied", "basically_satisfied"})
LIST_SIZE = 5
# the years a period may fall in: at the edges of Python's and Postgres's calendars a Beijing midnight
# (or the month after) is not a time either of them has
FIRST_YEAR, LAST_YEAR = 1900, 9998
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class PeriodError(ValueError):
    """A period that cannot be read; names the offending field."""

    def __init__(self, field_name: str, reason: str):
        super().__init__(reason)
        self.field = field_name


@dataclass(frozen=True)
class Period:
    """[start, end) in Beijing calendar dates: `month=2026-11` is 2026-11-01 … 2026-12-01, 00:00 CST."""

    start: date
    end: date

    @property
    def begins(self) -> datetime:
        return datetime.combine(self.start, time(), BEIJING)

    @property
    def ends(self) -> datetime:
        return datetime.combine(self.end, time(), BEIJING)

    def __contains__(self, t: datetime | None) -> bool:
        return t is not None and self.begins <= t < self.ends

    @classmethod
    def month(cls, text: str) -> Period:
        match = _MONTH.match(text)
        if not match:
            raise PeriodError("month", f"{text!r} is not a month like 2026-11 / 月份格式应为 YYYY-MM")
        year, month = int(match[1]), int(match[2])
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise PeriodError("month", f"a month of {FIRST_YEAR}–{LAST_YEAR} / 月份须在 {FIRST_YEAR}–{LAST_YEAR} 年之间")
        return cls(date(year, month, 1), date(year + month // 12, month % 12 + 1, 1))

    def as_dict(self) -> dict:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "timezone": "Asia/Shanghai"}


def period_from(month: str | None = None, start: str | None = None, end: str | None = None) -> Period:
    """A period from `month` (YYYY-MM) or from `from` / `to` dates (to exclusive); PeriodError names the field."""
    if month is not None:
        if start is not None or end is not None:
            raise PeriodError("month", "give either month or from/to, not both / 月份与起止日期只能二选一")
        return Period.month(month)
    if start is None or end is None:
        missing = "month" if start is None and end is None else ("from" if start is None else "to")
        raise PeriodError(missing, "give month=YYYY-MM or both from and to / 请给出月份或起止日期")
    dates = {}
    for name, text in (("from", start), ("to", end)):
        try:
            dates[name] = date.fromisoformat(text)
        except ValueError:
            raise PeriodError(name, f"{text!r} is not a date like 2026-11-01 / 日期格式应为 YYYY-MM-DD") from None
        if not FIRST_YEAR <= dates[name].year <= LAST_YEAR:
            raise PeriodError(name, f"a date of {FIRST_YEAR}–{LAST_YEAR} / 日期须在 {FIRST_YEAR}–{LAST_YEAR} 年之间")
    if dates["to"] <= dates["from"]:
        raise PeriodError("to", "to must be after from / 结束日期须晚于开始日期")
    return Period(dates["from"], dates["to"])


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights of the combined score: only the three rates, none negative, not all zero; missing ones are 0."""
    unknown = set(weights) - set(RATE_NAMES)
    if unknown:
        raise ValueError(f"unknown rate(s) {sorted(unknown)}; the rates are {list(RATE_NAMES)}")
    if any(w < 0 for w in weights.values()):
        raise ValueError("a weight cannot be negative")
    if not any(w > 0 for w in weights.values()):
        raise ValueError("at least one weight must be positive")
    return {name: float(weights.get(name, 0.0)) for name in RATE_NAMES}


# --- facts --------------------------------------------------------------------


@dataclass(frozen=True)
class SummonsFacts:
    summons_id: UUID
    whistle_id: UUID
    responder_id: str
    report_deadline: datetime | None = None  # the latest one escalation announced
    reported_at: datetime | None = None
    resolve_deadline: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class WhistleFacts:
    whistle_id: UUID
    closed_at: datetime | None = None


@dataclass(frozen=True)
class FollowUp:
    whistle_id: UUID
    solved: bool
    satisfaction: str
    at: datetime


@dataclass(frozen=True)
class Facts:
    summons: tuple[SummonsFacts, ...] = ()
    whistles: tuple[WhistleFacts, ...] = ()
    followups: tuple[FollowUp, ...] = ()


def facts_from_events(events: Iterable[Event]) -> Facts:
    """Fold an event history, in order, into the facts the rates need (the ledger's projection, in memory)."""
    summons: dict[UUID, dict] = {}
    closed: dict[UUID, datetime] = {}
    followups: list[FollowUp] = []
    for e in events:
        if isinstance(e, SummonsIssued):
            summons.setdefault(e.summons_id, {"summons_id": e.summons_id, "whistle_id": e.whistle_id,
                                              "responder_id": e.responder_id})
        elif isinstance(e, WhistleClosed):
            closed.setdefault(e.whistle_id, e.occurred_at)  # struck off once; the ledger ignores a repeat
        elif isinstance(e, WhistleFollowedUp):
            followups.append(FollowUp(e.whistle_id, e.solved, e.satisfaction, e.occurred_at))
        elif isinstance(e, (SummonsReturned, SummonsTransferred)):
            summons.pop(e.summons_id, None)  # left out: the summons that replaces it counts
        elif (s := summons.get(getattr(e, "summons_id", None))) is None:
            continue  # about a summons never issued: the ledger has no row to update either
        elif isinstance(e, SlaStarted):
            s["report_deadline"] = e.deadlines.get("report")
            s["resolve_deadline"] = e.deadlines.get("resolve")
        elif isinstance(e, SlaRescheduled) and e.deadline is not None and e.clock in ("report", "resolve"):
            s[f"{e.clock}_deadline"] = e.deadline  # a paused clock (deadline None) keeps its last deadline
        elif isinstance(e, SummonsReported):
            s.setdefault("reported_at", e.occurred_at)
        elif isinstance(e, SummonsResolved):
            s.setdefault("resolved_at", e.occurred_at)
    whistle_ids = {s["whistle_id"] for s in summons.values()} | set(closed)
    return Facts(
        summons=tuple(SummonsFacts(**s) for s in summons.values()),
        whistles=tuple(WhistleFacts(w, closed.get(w)) for w in sorted(whistle_ids)),
        followups=tuple(followups),
    )


# --- rates --------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        """None, not 0, when nothing was counted."""
        return self.numerator / self.denominator if self.denominator else None

    def as_dict(self) -> dict:
        value = self.value
        return {"rate": None if value is None else round(value, 4),
                "numerator": self.numerator, "denominator": self.denominator}


@dataclass(frozen=True)
class Rates:
    unit: str
    period: Period
    response: Rate
    resolution: Rate
    satisfaction: Rate
    score: float | None
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    @property
    def counted(self) -> bool:
        return any(getattr(self, name).denominator for name in RATE_NAMES)

    def as_dict(self) -> dict:
        return {
            "unit": self.unit, "period": self.period.as_dict(),
            **{name: getattr(self, name).as_dict() for name in RATE_NAMES},
            "score": None if self.score is None else round(self.score, 4), "weights": self.weights,
        }


def _known(t: datetime | None, now: datetime) -> datetime | None:
    """The time if it has happened by `now`, else None (not known yet)."""
    return t if t is not None and t <= now else None


def _overdue(deadline: datetime | None, done: datetime | None, period: Period, now: datetime) -> bool:
    """The deadline fell in the period, has passed, and the work was not done by then."""
    return deadline in period and deadline <= now and (done is None or done > deadline)


def _latest_unsolved(followups: Iterable[FollowUp]) -> set[UUID]:
    """Whistles whose latest follow-up says 'not solved' (未解决)."""
    latest: dict[UUID, FollowUp] = {}
    for f in sorted(followups, key=lambda f: f.at):
        latest[f.whistle_id] = f
    return {w for w, f in latest.items() if not f.solved}


def _response(summons: Iterable[SummonsFacts], period: Period, now: datetime) -> Rate:
    num = den = 0
    for s in summons:
        deadline, reported = s.report_deadline, _known(s.reported_at, now)
        if deadline in period and (deadline <= now or reported is not None):
            den += 1
            if reported is not None and reported <= deadline:
                num += 1
    return Rate(num, den)


def _resolution(summons: Iterable[SummonsFacts], unsolved: set[UUID], period: Period, now: datetime) -> Rate:
    num = den = 0
    for s in summons:
        resolved = _known(s.resolved_at, now)
        if resolved in period:
            den += 1
            if s.whistle_id not in unsolved:
                num += 1
        elif _overdue(s.resolve_deadline, resolved, period, now):
            den += 1
    return Rate(num, den)


def _community_resolution(facts: Facts, unsolved: set[UUID], period: Period, now: datetime) -> Rate:
    closed = {w.whistle_id: _known(w.closed_at, now) for w in facts.whistles}
    deadlines: dict[UUID, list[datetime]] = {}
    for s in facts.summons:
        if s.resolve_deadline is not None:
            deadlines.setdefault(s.whistle_id, []).append(s.resolve_deadline)
    num = den = 0
    for whistle_id in closed.keys() | deadlines.keys():
        closed_at = closed.get(whistle_id)
        if closed_at in period:
            den += 1
            if whistle_id not in unsolved:
                num += 1
        elif any(_overdue(d, closed_at, period, now) for d in deadlines.get(whistle_id, ())):
            den += 1
    return Rate(num, den)


def _satisfaction(followups: Iterable[FollowUp], whistle_ids: set[UUID] | None, period: Period) -> Rate:
    counted = [f for f in followups if f.at in period and (whistle_ids is None or f.whistle_id in whistle_ids)]
    return Rate(sum(f.satisfaction in PLEASED for f in counted), len(counted))


def score(values: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """The weighted mean of the rates that are not None, the weights renormalised over them."""
    present = {name: v for name, v in values.items() if v is not None and weights.get(name, 0) > 0}
    total = sum(weights[name] for name in present)
    return sum(weights[name] * v for name, v in present.items()) / total if total else None


def compute(unit: str, facts: Facts, period: Period, now: datetime,
            weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> Rates:
    """The three rates and the combined score of a responder (or `community`) over the period, as of `now`."""
    followups = [f for f in facts.followups if f.at <= now]
    unsolved = _latest_unsolved(followups)
    if unit == COMMUNITY:
        summons = list(facts.summons)
        resolution = _community_resolution(facts, unsolved, period, now)
        satisfaction = _satisfaction(followups, None, period)
    else:
        summons = [s for s in facts.summons if s.responder_id == unit]
        resolution = _resolution(summons, unsolved, period, now)
        satisfaction = _satisfaction(followups, {s.whistle_id for s in summons}, period)
    response = _response(summons, period, now)
    values = {"response": response.value, "resolution": resolution.value, "satisfaction": satisfaction.value}
    return Rates(unit, period, response, resolution, satisfaction, score(values, weights), dict(weights))


@dataclass(frozen=True)
class Ranking:
    period: Period
    units: tuple[Rates, ...]  # best first; units without a score last
    red: tuple[Rates, ...]  # 红榜: the best, best first
    black: tuple[Rates, ...]  # 黑榜: the worst, worst first

    def as_dict(self) -> dict:
        return {"period": self.period.as_dict(), "red": [r.as_dict() for r in self.red],
                "black": [r.as_dict() for r in self.black], "units": [r.as_dict() for r in self.units]}


def rank(facts: Facts, period: Period, now: datetime, weights: Mapping[str, float] = DEFAULT_WEIGHTS,
         size: int = LIST_SIZE) -> Ranking:
    """Every responder with something counted, by score (ties by unit id); the red and black lists.

    The lists never overlap: with fewer than 2 × size units scored, each takes half (the middle one
    of an odd number is on neither), so no unit is praised and blamed at once.
    """
    rows = [r for unit in sorted({s.responder_id for s in facts.summons})
            if (r := compute(unit, facts, period, now, weights)).counted]
    ranked = sorted(rows, key=lambda r: (r.score is None, -(r.score or 0.0), r.unit))
    scored = [r for r in ranked if r.score is not None]
    k = min(size, len(scored) // 2)
    return Ranking(period, tuple(ranked), tuple(scored[:k]), tuple(reversed(scored[len(scored) - k:])))
