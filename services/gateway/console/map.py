"""The community map: the buildings' footprints in their grids as inline SVG, open whistles as pins.

No tiles: a community office may be offline, so nothing is fetched from anywhere but the services.
The footprints (WGS 84) are projected to metres around the community's centre (equirectangular).
"""

from __future__ import annotations

import asyncio
import math

from fastapi import Request
from fastapi.responses import Response

from services.gateway.console import labels
from services.gateway.console.web import Console, Page
from shared import subjects

STAFF = ("dispatcher", "supervisor")
EARTH_M = 6_371_008.8
PAGE_SIZE = 1000
MAX_PAGES = 5  # at most 5,000 open whistles on the map
WIDTH = 1000  # the drawing's width in SVG units; its height follows the community's shape
PAD = 30
PIN_R = 7
# the whistle states as the board colours them (see console.css, .pin-*)
PIN_CLASS = {"open": "waiting", "reopened": "waiting", "dispatched": "running", "resolved": "done",
             "verified": "done", "unroutable": "breached", "awaiting_arbitration": "breached"}
LEGEND = (("waiting", ("open", "reopened")), ("running", ("dispatched",)), ("done", ("resolved", "verified")),
          ("breached", ("unroutable", "awaiting_arbitration")))


class Projection:
    """Equirectangular: metres east and north of a centre, scaled into the drawing (y grows down)."""

    def __init__(self, points: list[tuple[float, float]]):
        longs = [p[0] for p in points]
        lats = [p[1] for p in points]
        self.long0 = (min(longs) + max(longs)) / 2
        self.lat0 = (min(lats) + max(lats)) / 2
        self.k = math.cos(math.radians(self.lat0))
        xs = [self._east(lo) for lo in longs]
        ys = [self._north(la) for la in lats]
        self.west, self.north = min(xs), max(ys)
        span_x, span_y = max(max(xs) - self.west, 1.0), max(self.north - min(ys), 1.0)
        self.scale = (WIDTH - 2 * PAD) / span_x
        self.width = WIDTH
        self.height = round(span_y * self.scale + 2 * PAD)

    def _east(self, long: float) -> float:
        return math.radians(long - self.long0) * self.k * EARTH_M

    def _north(self, lat: float) -> float:
        return math.radians(lat - self.lat0) * EARTH_M

    def xy(self, long: float, lat: float) -> tuple[float, float]:
        return (round(PAD + (self._east(long) - self.west) * self.scale, 1),
                round(PAD + (self.north - self._north(lat)) * self.scale, 1))


def _ring(building: dict) -> list[tuple[float, float]]:
    try:
        return [(float(p[0]), float(p[1])) for p in building["footprint"]["coordinates"][0]]
    except (KeyError, IndexError, TypeError, ValueError):
        return []


def draw(page: Page, buildings: list[dict], grids: list[dict], whistles: list[dict], categories) -> dict:
    """What the template draws: grids, buildings and pins in SVG units, with their names."""
    _ = page.gettext
    rings = {b["id"]: _ring(b) for b in buildings}
    points = [p for ring in rings.values() for p in ring]
    points += [(b["centre"]["long"], b["centre"]["lat"]) for b in buildings if b.get("centre")]
    if not points:
        return {"width": WIDTH, "height": 400, "grids": [], "buildings": [], "pins": [], "unplaced": []}
    proj = Projection(points)

    def grid_name(gid: str) -> str:
        return _("Grid %(n)s") % {"n": str(gid).lstrip("g")}

    grid_index = {g["id"]: i % 4 for i, g in enumerate(sorted(grids, key=lambda g: str(g["id"])))}
    shown_grids = []
    for g in grids:
        members = [p for bid in g.get("buildings", []) for p in rings.get(bid, [])]
        if not members:
            continue
        xys = [proj.xy(lo, la) for lo, la in members]
        margin = 8
        x0, y0 = min(x for x, _y in xys) - margin, min(y for _x, y in xys) - margin
        x1, y1 = max(x for x, _y in xys) + margin, max(y for _x, y in xys) + margin
        shown_grids.append({"id": g["id"], "name": grid_name(g["id"]), "tint": grid_index.get(g["id"], 0),
                            "x": round(x0, 1), "y": round(y0, 1), "w": round(x1 - x0, 1), "h": round(y1 - y0, 1),
                            "label_x": round(x0 + 4, 1), "label_y": round(y0 - 4, 1),
                            "buildings": ", ".join(g.get("buildings", []))})
    centres: dict[str, tuple[float, float]] = {}
    shown_buildings = []
    for b in sorted(buildings, key=lambda b: int(b["id"]) if str(b["id"]).isdigit() else 0):
        ring = rings[b["id"]]
        if b.get("centre"):
            cx, cy = proj.xy(b["centre"]["long"], b["centre"]["lat"])
        elif ring:
            cx, cy = proj.xy(sum(p[0] for p in ring) / len(ring), sum(p[1] for p in ring) / len(ring))
        else:
            continue
        centres[b["id"]] = (cx, cy)
        shown_buildings.append({
            "id": b["id"], "grid": b.get("grid"), "tint": grid_index.get(b.get("grid"), 0),
            "points": " ".join(f"{x},{y}" for x, y in (proj.xy(lo, la) for lo, la in ring)),
            "x": cx, "y": cy,
            "name": _("Building %(n)s, %(grid)s") % {"n": b["id"], "grid": grid_name(b.get("grid") or "")},
        })
    pins, unplaced = [], []
    at_building: dict[str, int] = {}
    for w in whistles:
        building = str((w.get("location") or {}).get("building") or "")
        status_name = _(labels.label(labels.WHISTLE_STATUSES, w.get("status")))
        category = categories(w.get("category"))
        if building not in centres:
            unplaced.append({**w, "category_name": category, "status_name": status_name})
            continue
        n = at_building.get(building, 0)
        at_building[building] = n + 1
        cx, cy = centres[building]
        cx += PIN_R * 2.5  # beside the building's number, not over it
        if n:  # several whistles at one building: around its centre, outwards
            angle, ring_no = n * 2.4, 1 + n // 8
            cx, cy = round(cx + math.cos(angle) * PIN_R * 2 * ring_no, 1), round(cy + math.sin(angle) * PIN_R * 2 * ring_no, 1)
        pins.append({"id": w["id"], "x": cx, "y": cy, "state": PIN_CLASS.get(w.get("status"), "running"),
                     "status": w.get("status"), "building": building,
                     "name": _("%(category)s at building %(n)s: %(status)s")
                     % {"category": category, "n": building, "status": status_name}})
    return {"width": proj.width, "height": proj.height, "grids": shown_grids, "buildings": shown_buildings,
            "pins": pins, "unplaced": unplaced}


def add_map(console: Console) -> None:
    router, bus, names = console.router, console.bus, console.names

    async def open_whistles(page: Page) -> tuple[list[dict], bool]:
        """Every whistle on the ledger (not struck off), page by page, at most MAX_PAGES pages."""
        items: list[dict] = []
        cursor = None
        for _ in range(MAX_PAGES):
            reply = await bus.ask(subjects.QRY_LEDGER_WHISTLES, page.actor,
                                  {"status": None, "limit": PAGE_SIZE, **({"cursor": cursor} if cursor else {})})
            if not reply.ok:
                raise console.refused(page, reply)
            items += reply.data["items"]
            cursor = reply.data.get("next_cursor")
            if not cursor:
                return items, False
        return items, True

    @router.get("/map")
    async def community_map(request: Request) -> Response:
        page = await console.page(request, STAFF)
        buildings, grids = await asyncio.gather(
            bus.ask(subjects.QRY_ROUTING_BUILDINGS, page.actor),
            bus.ask(subjects.QRY_ROUTING_GRIDS, page.actor),
        )
        for reply in (buildings, grids):
            if not reply.ok:
                raise console.refused(page, reply)
        whistles, more = await open_whistles(page)
        await names.load_categories(page.actor)
        drawn = draw(page, buildings.data, grids.data, whistles, lambda c: names.category(c, page.locale))
        _ = page.gettext
        legend = [{"state": state, "names": ", ".join(_(labels.label(labels.WHISTLE_STATUSES, s)) for s in statuses)}
                  for state, statuses in LEGEND]
        return console.render(page, "map.html", more=more, legend=legend, **drawn)
