"""The responder registry: members, sections and departments, their superiors, grids and windows."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from shared.contracts import ResponderKind

DEFAULT_REGISTRY = Path(__file__).parent / "data" / "registry.json"
BEIJING = ZoneInfo("Asia/Shanghai")
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WINDOW = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)(?:-(mon|tue|wed|thu|fri|sat|sun))? (\d\d):(\d\d)-(\d\d):(\d\d)$")


@dataclass(frozen=True)
class Window:
    """A weekly availability window in Beijing time, e.g. 'mon-fri 18:00-21:00'."""

    days: frozenset[int]
    start: time
    end: time | None  # None: until midnight

    @classmethod
    def parse(cls, text: str) -> Window:
        m = _WINDOW.match(text.strip())
        if not m:
            raise ValueError(f"{text!r} is not a window like 'mon-fri 18:00-21:00'")
        first, last = _DAYS.index(m[1]), _DAYS.index(m[2] or m[1])
        days = frozenset(range(first, last + 1)) if first <= last else frozenset([*range(first, 7), *range(0, last + 1)])
        start, end = (int(m[3]), int(m[4])), (int(m[5]), int(m[6]))
        if start >= end or end > (24, 0) or start[1] > 59 or end[1] > 59:
            raise ValueError(f"{text!r}: the window must end after it starts, by 24:00")
        return cls(days, time(*start), None if end == (24, 0) else time(*end))

    def covers(self, moment: datetime) -> bool:
        local = moment.astimezone(BEIJING)
        t = local.time()
        return local.weekday() in self.days and self.start <= t and (self.end is None or t < self.end)


@dataclass(frozen=True)
class Responder:
    id: str
    kind: ResponderKind
    name_en: str
    name_zh: str
    superior_id: str | None = None
    branch: str | None = None
    building: str | None = None
    skills: frozenset[str] = frozenset()
    availability: tuple[Window, ...] = ()
    max_concurrent: int = 3
    active: bool = True

    def available(self, moment: datetime) -> bool:
        return not self.availability or any(w.covers(moment) for w in self.availability)

    @property
    def summonable(self) -> bool:
        """Whether a whistle may be handed to it: a command centre (a rung of the ladder) is told, not summoned."""
        return self.kind is not ResponderKind.command_centre


@dataclass
class Registry:
    """Responders indexed for routing: members by building and by grid."""

    responders: dict[str, Responder]
    grids: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.grid_of = {b: g for g, buildings in self.grids.items() for b in buildings}
        self.by_building: dict[str, list[Responder]] = defaultdict(list)
        self.by_grid: dict[str, list[Responder]] = defaultdict(list)
        self.members: list[Responder] = []
        # the same lists per skill, so a choice looks only at members who have the skill
        self.by_building_skill: dict[tuple[str, str], list[Responder]] = defaultdict(list)
        self.by_grid_skill: dict[tuple[str, str], list[Responder]] = defaultdict(list)
        self.by_skill: dict[str, list[Responder]] = defaultdict(list)
        for r in self.responders.values():
            if r.kind is ResponderKind.member and r.active:
                self.members.append(r)
                for skill in r.skills:
                    self.by_skill[skill].append(r)
                if r.building:
                    self.by_building[r.building].append(r)
                    for skill in r.skills:
                        self.by_building_skill[(r.building, skill)].append(r)
                    if r.building in self.grid_of:
                        grid = self.grid_of[r.building]
                        self.by_grid[grid].append(r)
                        for skill in r.skills:
                            self.by_grid_skill[(grid, skill)].append(r)
        for r in self.responders.values():
            if r.superior_id and r.superior_id not in self.responders:
                raise ValueError(f"responder {r.id!r} names unknown superior {r.superior_id!r}")

    def rings(self, building: str, skill: str | None) -> Iterator[tuple[str, list[Responder], int]]:
        """Members to look at, nearest first and lazily: (ring, members with the skill, how many lack it)."""
        grid = self.grid_of.get(building)
        here = self.by_building.get(building, [])
        around = self.by_grid.get(grid, []) if grid else here
        if skill is None:
            yield "same building", here, 0
            yield "same grid", [m for m in around if m.building != building], 0
            yield "elsewhere", [m for m in self.members if m.building != building and self.grid_of.get(m.building) != grid], 0
            return
        here_s = self.by_building_skill.get((building, skill), [])
        yield "same building", here_s, len(here) - len(here_s)
        around_s = [m for m in self.by_grid_skill.get((grid, skill), []) if m.building != building] if grid else []
        yield "same grid", around_s, (len(around) - len(here) - len(around_s)) if grid else 0
        # the far ring is built only when nobody nearer could take it
        rest_s = [m for m in self.by_skill.get(skill, [])
                  if m.building != building and (grid is None or self.grid_of.get(m.building) != grid)]
        yield "elsewhere", rest_s, len(self.members) - len(around) - len(rest_s)

    def __getitem__(self, responder_id: str) -> Responder:
        return self.responders[responder_id]

    def __contains__(self, responder_id: object) -> bool:
        return responder_id in self.responders

    def values(self):
        return self.responders.values()


def responder_from(raw: dict) -> Responder:
    return Responder(
        id=raw["id"], kind=ResponderKind(raw["kind"]), name_en=raw["name_en"], name_zh=raw["name_zh"],
        superior_id=raw.get("superior_id"), branch=raw.get("branch"), building=raw.get("building"),
        skills=frozenset(raw.get("skills") or ()), availability=tuple(Window.parse(w) for w in raw.get("availability") or ()),
        max_concurrent=int(raw.get("max_concurrent", 3)), active=bool(raw.get("active", True)),
    )


def load_registry(path: Path = DEFAULT_REGISTRY) -> Registry:
    """Read and check the registry file (unknown superiors and bad windows are refused, naming the file)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        responders = {r["id"]: responder_from(r) for r in data["responders"]}
        return Registry(responders, {g: tuple(b) for g, b in (data.get("grids") or {}).items()})
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
