"""Problem classes (一个诉求解决一类问题): pure rules for grouping whistles and raising one proactive whistle.

Whistles of one category at one building (or one grid, when the whistle names a grid) within a
window join one class; every complainant stays attached. A class that reaches the threshold raises
one proactive whistle for the area (未诉先办), once: the class records when it did. A whistle alone is
not yet grouped: `whistle.grouped` goes out when a second one joins (for both) and for each one after.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from shared.contracts import Location, Source, Tier, WhistleBlown, WhistleGrouped
from shared.ids import uuid7

ACTOR = "system:intake"


@dataclass(frozen=True)
class ProblemClass:
    """A class as intake keeps it; `raised_at` is set once its proactive whistle is raised."""

    id: UUID
    category: str
    building: str
    grid: str | None
    first_whistle_id: UUID
    size: int
    first_seen: datetime
    last_seen: datetime
    proactive_whistle_id: UUID | None = None
    raised_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """Where a whistle went: the class as it now stands, whether it is new, and the events to emit."""

    problem_class: ProblemClass
    created: bool
    grouped: tuple[WhistleGrouped, ...] = ()
    proactive: WhistleBlown | None = None

    @property
    def events(self) -> list[WhistleGrouped | WhistleBlown]:
        return [*self.grouped, *([self.proactive] if self.proactive else [])]


def matches(c: ProblemClass, whistle: WhistleBlown) -> bool:
    """Same category, and the same grid when the whistle names one, otherwise the same building."""
    if c.category != whistle.category:
        return False
    if whistle.location.grid:
        return c.grid == whistle.location.grid
    return c.building == whistle.location.building


def assign(
    existing_open_classes: Iterable[ProblemClass], whistle: WhistleBlown, now: datetime, window: timedelta,
    threshold: int,
) -> Decision | None:
    """Join the newest matching class seen within the window, or start one; None for proactive whistles."""
    if whistle.source == Source.proactive:  # the class's own whistle is not a complaint about it
        return None
    candidates = [c for c in existing_open_classes if matches(c, whistle) and now - c.last_seen <= window]
    if candidates:
        newest = max(candidates, key=lambda c: c.last_seen)
        joined = replace(newest, size=newest.size + 1, last_seen=max(newest.last_seen, now))
        created = False
    else:
        joined = ProblemClass(id=uuid7(), category=whistle.category, building=whistle.location.building,
                              grid=whistle.location.grid, first_whistle_id=whistle.whistle_id, size=1,
                              first_seen=now, last_seen=now)
        created = True
    proactive = None
    if joined.size >= threshold and joined.raised_at is None:
        proactive = proactive_whistle(joined, window, now, whistle.event_id)
        joined = replace(joined, proactive_whistle_id=proactive.whistle_id, raised_at=now)
    # the first whistle learns it is part of a class when the second arrives
    members = (joined.first_whistle_id, whistle.whistle_id) if joined.size == 2 else (whistle.whistle_id,)
    grouped = tuple(
        WhistleGrouped(occurred_at=now, whistle_id=member, causation_id=whistle.event_id, actor=ACTOR,
                       class_id=joined.id, size=joined.size, first_seen=joined.first_seen, last_seen=joined.last_seen)
        for member in members
    ) if joined.size >= 2 else ()
    return Decision(problem_class=joined, created=created, grouped=grouped, proactive=proactive)


def proactive_whistle(c: ProblemClass, window: timedelta, now: datetime, cause: UUID) -> WhistleBlown:
    """难事特办: one complex whistle for the whole class, so one fix settles every complaint."""
    days = max(1, round(window.total_seconds() / 86400))
    where_en = f"grid {c.grid}" if c.grid else f"building {c.building}"
    where_zh = f"{c.grid}网格" if c.grid else f"{c.building}号楼"
    return WhistleBlown(
        occurred_at=now, whistle_id=uuid7(), causation_id=cause, actor=ACTOR, category=c.category,
        description=(f"Problem class: {c.size} complaints about {c.category} at {where_en} within {days} days"
                     f" / 同类问题：{days}天内{where_zh}关于{c.category}的诉求{c.size}件"),
        location=Location(building=c.building, grid=c.grid), tier=Tier.complex, source=Source.proactive,
    )
