"""Where the community's buildings are: WGS 84 centres and footprints, grids, and the nearest building to a point.

The registry file holds them (`buildings`, next to `grids`); a map draws the footprints with no tile
server, and an Open311 request that gives only lat/long is placed at the nearest building.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from services.routing.payloads import PlaceAsk
from shared.contracts import Command, Reply

if TYPE_CHECKING:
    from shared.runtime import NoPayload

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG): haversine is within 0.5% of WGS 84 at any distance


@dataclass(frozen=True)
class Point:
    lat: float
    long: float


@dataclass(frozen=True)
class Building:
    id: str
    grid: str
    centre: Point
    footprint: tuple[tuple[float, float], ...]  # GeoJSON exterior ring: (long, lat), closed, anticlockwise


@dataclass(frozen=True)
class Placed:
    building: Building
    distance_m: float


def haversine_m(a: Point, b: Point) -> float:
    """Great-circle distance in metres."""
    la1, la2 = math.radians(a.lat), math.radians(b.lat)
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin(math.radians(b.long - a.long) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def inside(point: Point, ring: tuple[tuple[float, float], ...]) -> bool:
    """Ray casting: is the point inside the closed ring (long, lat)?"""
    hit = False
    for (x1, y1), (x2, y2) in pairwise(ring):
        if (y1 > point.lat) != (y2 > point.lat) and point.long < x1 + (point.lat - y1) * (x2 - x1) / (y2 - y1):
            hit = not hit
    return hit


def _degrees(value: object, least: float, most: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not least <= value <= most:
        raise ValueError(f"{what}: {value!r} is not a number from {least:g} to {most:g}")
    return float(value)


def _ring(raw: object, where: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list) or len(raw) < 4:
        raise ValueError(f"{where}: a footprint is a ring of at least 4 [long, lat] positions")
    ring = []
    for i, position in enumerate(raw):
        if not isinstance(position, list) or len(position) != 2:
            raise ValueError(f"{where}[{i}]: a position is [long, lat]")
        ring.append((_degrees(position[0], -180, 180, f"{where}[{i}] long"),
                     _degrees(position[1], -90, 90, f"{where}[{i}] lat")))
    if ring[0] != ring[-1]:
        raise ValueError(f"{where}: the ring is not closed (its last position must repeat the first)")
    return tuple(ring)


class Site:
    """The buildings by id and by grid, in number order."""

    def __init__(self, buildings: list[Building]):
        self.buildings = {b.id: b for b in sorted(buildings, key=lambda b: (len(b.id), b.id))}
        self.grids: dict[str, list[Building]] = {}
        for b in self.buildings.values():
            self.grids.setdefault(b.grid, []).append(b)

    def nearest(self, point: Point) -> Placed | None:
        """The building whose centre is nearest the point (the lower number on a tie); None without buildings."""
        best = min(self.buildings.values(), key=lambda b: haversine_m(point, b.centre), default=None)
        return None if best is None else Placed(best, haversine_m(point, best.centre))

    def place(self, point: Point, within_m: float) -> Placed | None:
        """The nearest building when its centre is at most `within_m` away, else None."""
        found = self.nearest(point)
        return found if found is not None and found.distance_m <= within_m else None


def site_from(data: dict) -> Site:
    """The registry's grids and buildings, checked: each in one grid, its centre inside its closed footprint."""
    grids, raw = data.get("grids") or {}, data.get("buildings") or {}
    grid_of: dict[str, str] = {}
    for grid, members in grids.items():
        for b in members:
            if b in grid_of:
                raise ValueError(f"building {b!r} is in grid {grid_of[b]!r} and in grid {grid!r}")
            grid_of[b] = grid
    if missing := sorted(set(grid_of) - set(raw), key=lambda b: (len(b), b)):
        raise ValueError(f"buildings {missing} have no coordinates")
    buildings = []
    for bid, place in raw.items():
        if bid not in grid_of:
            raise ValueError(f"building {bid!r} is in no grid")
        where = f"buildings.{bid}"
        try:
            centre = Point(_degrees(place["centre"]["lat"], -90, 90, f"{where}.centre.lat"),
                           _degrees(place["centre"]["long"], -180, 180, f"{where}.centre.long"))
            ring = _ring(place["footprint"], f"{where}.footprint")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{where}: needs centre {{lat, long}} and footprint [[long, lat], …] ({exc})") from None
        if not inside(centre, ring):
            raise ValueError(f"{where}: the centre is outside the footprint (positions are [long, lat])")
        buildings.append(Building(bid, grid_of[bid], centre, ring))
    return Site(buildings)


def load_site(path: Path) -> Site:
    """The registry file's buildings, checked; a bad file is refused at start, naming it."""
    try:
        return site_from(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# --- what the gateway asks --------------------------------------------------------------------------------------


def _centre(p: Point) -> dict:
    return {"lat": p.lat, "long": p.long}


def public_building(b: Building) -> dict:
    return {"id": b.id, "name_en": f"Building {b.id}", "name_zh": f"{b.id}号楼", "grid": b.grid,
            "centre": _centre(b.centre), "footprint": {"type": "Polygon", "coordinates": [[list(p) for p in b.footprint]]}}


def public_grid(grid: str, buildings: list[Building]) -> dict:
    longs = [x for b in buildings for x, _ in b.footprint]
    lats = [y for b in buildings for _, y in b.footprint]
    return {"id": grid, "buildings": [b.id for b in buildings],
            "centre": {"lat": round(sum(b.centre.lat for b in buildings) / len(buildings), 7),
                       "long": round(sum(b.centre.long for b in buildings) / len(buildings), 7)},
            "bounds": {"south": min(lats), "west": min(longs), "north": max(lats), "east": max(longs)}}


def _distance(metres: float) -> str:
    return f"{metres:.0f} m" if metres < 10_000 else f"{metres / 1000:,.0f} km"


class PlaceHandlers:
    """The buildings and grids for a map, and placing a bare point (Open311 lat/long) at a building."""

    def __init__(self, site: Site, within_m: float):
        self.site = site
        self.within_m = within_m

    async def buildings(self, pool, cmd: Command[NoPayload]) -> Reply:
        """Every building with its grid, WGS 84 centre and footprint (GeoJSON polygon), by number."""
        return Reply.success([public_building(b) for b in self.site.buildings.values()])

    async def grids(self, pool, cmd: Command[NoPayload]) -> Reply:
        """Every grid with its buildings, centre and bounds."""
        return Reply.success([public_grid(g, bs) for g, bs in sorted(self.site.grids.items())])

    async def place(self, pool, cmd: Command[PlaceAsk]) -> Reply:
        """The building nearest a WGS 84 point, if its centre is within reach; refused (422) otherwise."""
        point = Point(cmd.payload.lat, cmd.payload.long)
        found = self.site.nearest(point)
        if found is None or found.distance_m > self.within_m:
            far = f" (the nearest, building {found.building.id}, is {_distance(found.distance_m)} away)" if found else ""
            far_zh = f"（最近的{found.building.id}号楼相距 {_distance(found.distance_m)}）" if found else ""
            return Reply.refuse(
                422, "too_far",
                f"lat {point.lat}, long {point.long} is not within {self.within_m:.0f} m of any building of the"
                f" community{far}: give address_id (1–22) or address_string"
                f" / 该位置 {self.within_m:.0f} 米内没有本社区楼栋{far_zh}，请填写楼号")
        return Reply.success({**public_building(found.building), "distance_m": round(found.distance_m, 1)})
