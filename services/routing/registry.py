"""The responder registry: members, sections and departments, their superiors, grids and windows."""

from __future__ import annotations

import json
import re
from collections import defaultdict
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
        for r in self.responders.values():
            if r.kind is ResponderKind.member and r.active:
                self.members.append(r)
                if r.building:
                    self.by_building[r.building].append(r)
                    if r.building in self.grid_of:
                        self.by_grid[self.grid_of[r.building]].append(r)
        for r in self.responders.values():
            if r.superior_id and r.superior_id not in self.responders:
                raise ValueError(f"responder {r.id!r} names unknown superior {r.superior_id!r}")

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
