"""The community on the map: building coordinates checked at load, and a bare lat/long placed at the nearest one."""

from __future__ import annotations

import copy
import json
import math
from itertools import combinations, pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.routing import seed
from services.routing.places import (
    PlaceHandlers,
    Point,
    haversine_m,
    inside,
    load_site,
    site_from,
)
from services.routing.registry import DEFAULT_REGISTRY
from shared import subjects
from shared.contracts import Actor, Command, Reply
from shared.runtime import NoPayload
from tests.unit.test_routing_requests import admit

SITE = load_site(DEFAULT_REGISTRY)
DATA = {"grids": seed.GRIDS, "buildings": seed.buildings()}


def offset(p: Point, north_m: float, east_m: float) -> Point:
    """A point so many metres north and east of p (flat: fine over a few hundred metres)."""
    per_degree = 6_371_008.8 * math.pi / 180
    return Point(p.lat + north_m / per_degree, p.long + east_m / (per_degree * math.cos(math.radians(p.lat))))


def ask() -> Command:
    return Command(actor=Actor(role="system", id="open311"), payload=NoPayload())


async def place(handlers: PlaceHandlers, **payload) -> Reply:
    """As the runtime answers it: the payload checked against the declared model (422), then the handler."""
    cmd = admit(subjects.QRY_ROUTING_PLACE, payload, "system", "open311")
    return cmd if isinstance(cmd, Reply) else await handlers.place(None, cmd)


# --- haversine and nearest ----------------------------------------------------------------------------------


def test_haversine_measures_known_distances() -> None:
    tiananmen, yanshan = Point(39.9055, 116.3976), Point(39.7195, 115.9755)
    assert haversine_m(tiananmen, tiananmen) == 0
    # 20.7 km south and 36.1 km west by a flat-earth reckoning
    assert haversine_m(tiananmen, yanshan) == pytest.approx(math.hypot(20_682, 36_090), abs=100)
    assert haversine_m(Point(0, 0), Point(1, 0)) == pytest.approx(111_195, abs=1)  # one degree of a meridian
    assert haversine_m(Point(0, 179.9), Point(0, -179.9)) == pytest.approx(22_239, abs=1)  # across the date line


@given(st.floats(-89, 89), st.floats(-180, 180), st.floats(-89, 89), st.floats(-180, 180))
def test_haversine_is_symmetric_and_bounded(la1, lo1, la2, lo2) -> None:
    a, b = Point(la1, lo1), Point(la2, lo2)
    assert haversine_m(a, b) == pytest.approx(haversine_m(b, a), abs=1e-6)
    assert 0 <= haversine_m(a, b) <= math.pi * 6_371_008.8 + 1


@pytest.mark.parametrize("bid", sorted(SITE.buildings, key=int))
def test_a_point_at_or_near_a_building_is_placed_there(bid) -> None:
    b = SITE.buildings[bid]
    placed = SITE.place(b.centre, 150)
    assert placed.building.id == bid and placed.distance_m == 0
    near = SITE.place(offset(b.centre, 3, -4), 150)  # 5 m off: closer to it than to any neighbour
    assert near.building.id == bid and near.distance_m == pytest.approx(5, abs=0.05)


def test_within_150_m_the_nearest_building_outside_it_none() -> None:
    # building 1 is the north-west corner: due north of it the next building is far behind
    one = SITE.buildings["1"].centre
    assert SITE.place(offset(one, 149, 0), 150).building.id == "1"
    assert SITE.place(offset(one, 151, 0), 150) is None
    assert SITE.nearest(offset(one, 151, 0)).building.id == "1"  # still the nearest, just too far
    assert SITE.place(Point(39.9055, 116.3976), 150) is None  # Tiananmen


def test_between_two_buildings_the_nearer_wins_and_a_tie_goes_to_the_lower_number() -> None:
    one, two = SITE.buildings["1"].centre, SITE.buildings["2"].centre
    a_third = Point(one.lat + (two.lat - one.lat) / 3, one.long + (two.long - one.long) / 3)
    assert SITE.nearest(a_third).building.id == "1"
    two_thirds = Point(one.lat + 2 * (two.lat - one.lat) / 3, one.long + 2 * (two.long - one.long) / 3)
    assert SITE.nearest(two_thirds).building.id == "2"
    same_place = DATA["buildings"]["1"]
    twins = site_from({"grids": {"g": ["10", "9"]}, "buildings": {"10": same_place, "9": same_place}})
    assert twins.nearest(one).building.id == "9"  # by number, not by text ("10" < "9")


# --- the seed community's data ------------------------------------------------------------------------------


def test_the_22_buildings_sit_in_4_grids_around_xingcheng_yanshan_in_about_013_km2() -> None:
    assert sorted(SITE.buildings, key=int) == [str(n) for n in range(1, 23)]
    assert {g: [b.id for b in bs] for g, bs in SITE.grids.items()} == seed.GRIDS
    lats = [y for b in SITE.buildings.values() for _, y in b.footprint]
    longs = [x for b in SITE.buildings.values() for x, _ in b.footprint]
    assert 39.70 < min(lats) < max(lats) < 39.74 and 115.95 < min(longs) < max(longs) < 116.0  # Yanshan, Fangshan
    south, north, west, east = min(lats), max(lats), min(longs), max(longs)
    height = haversine_m(Point(south, west), Point(north, west))
    width = haversine_m(Point(south, west), Point(south, east))
    assert 0.08e6 < height * width < 0.16e6  # the buildings' bounding box: within the 0.13 km² estate


def test_no_two_buildings_overlap_and_neighbours_are_tens_of_metres_apart() -> None:
    for a, b in combinations(SITE.buildings.values(), 2):
        assert not any(inside(Point(lat, long), b.footprint) for long, lat in a.footprint), (a.id, b.id)
        assert haversine_m(a.centre, b.centre) > 40, (a.id, b.id)


def test_each_footprint_is_a_closed_anticlockwise_ring_around_its_centre() -> None:
    for b in SITE.buildings.values():
        ring = b.footprint
        assert ring[0] == ring[-1] and len(ring) == 5
        twice_area = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in pairwise(ring))
        assert twice_area > 0  # GeoJSON (RFC 7946): exterior rings anticlockwise
        assert inside(b.centre, ring)


# --- refusing a bad file ------------------------------------------------------------------------------------


def broken(change) -> dict:
    data = copy.deepcopy(DATA)
    change(data)
    return data


@pytest.mark.parametrize(("change", "says"), [
    (lambda d: d["buildings"]["7"]["footprint"].pop(), "not closed"),
    (lambda d: d["buildings"]["7"]["footprint"].__setitem__(slice(None), [[115.97, 39.72]] * 3), "at least 4"),
    (lambda d: d["buildings"]["7"]["centre"].__setitem__("lat", 91), "centre.lat"),
    (lambda d: d["buildings"]["7"]["centre"].__setitem__("long", -181), "centre.long"),
    (lambda d: d["buildings"]["7"]["centre"].__setitem__("lat", float("nan")), "centre.lat"),
    (lambda d: d["buildings"]["7"]["centre"].__setitem__("lat", True), "centre.lat"),
    (lambda d: d["buildings"]["7"]["footprint"][2].__setitem__(1, 95.0), "footprint[2] lat"),
    (lambda d: d["buildings"]["7"]["footprint"][2].__setitem__(0, "115.9"), "footprint[2] long"),
    (lambda d: d["buildings"]["7"]["footprint"].__setitem__(1, [115.97]), "footprint[1]"),
    (lambda d: d["buildings"]["7"].pop("centre"), "needs centre"),
    # lat and long swapped: the centre falls outside its own footprint
    (lambda d: d["buildings"]["7"].__setitem__("footprint", [[y, x] for x, y in d["buildings"]["7"]["footprint"]]),
     "footprint"),
    (lambda d: d["buildings"]["7"].__setitem__("centre", d["buildings"]["8"]["centre"]), "outside the footprint"),
    (lambda d: d["grids"]["g2"].append("1"), "in grid 'g1' and in grid 'g2'"),
    (lambda d: d["grids"]["g1"].remove("1"), "building '1' is in no grid"),
    (lambda d: d["buildings"].pop("22"), "['22'] have no coordinates"),
])
def test_a_bad_registry_is_refused_at_load_naming_what_is_wrong(tmp_path, change, says) -> None:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(broken(change)), encoding="utf-8")
    with pytest.raises(ValueError) as refused:
        load_site(path)
    assert says in str(refused.value) and str(path) in str(refused.value)


def test_the_good_data_loads() -> None:
    assert len(site_from(DATA).buildings) == 22


# --- the queries the gateway asks ---------------------------------------------------------------------------


async def test_buildings_and_grids_for_a_map() -> None:
    handlers = PlaceHandlers(SITE, 150)
    buildings = (await handlers.buildings(None, ask())).data
    assert [b["id"] for b in buildings] == [str(n) for n in range(1, 23)]
    seven = buildings[6]
    assert (seven["grid"], seven["name_zh"], seven["footprint"]["type"]) == ("g2", "7号楼", "Polygon")
    assert seven["centre"] == {"lat": SITE.buildings["7"].centre.lat, "long": SITE.buildings["7"].centre.long}
    ring = seven["footprint"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    grids = (await handlers.grids(None, ask())).data
    assert [(g["id"], len(g["buildings"])) for g in grids] == [("g1", 6), ("g2", 6), ("g3", 5), ("g4", 5)]
    g1 = grids[0]["bounds"]
    assert g1["south"] < SITE.buildings["3"].centre.lat < g1["north"]
    assert g1["west"] < SITE.buildings["3"].centre.long < g1["east"]


async def test_place_answers_the_building_or_refuses_in_english_and_chinese() -> None:
    handlers = PlaceHandlers(SITE, 150)
    near = offset(SITE.buildings["12"].centre, 20, 0)
    placed = await place(handlers, lat=near.lat, long=near.long)
    assert placed.ok and placed.data["id"] == "12" and placed.data["distance_m"] == pytest.approx(20, abs=0.1)
    far = await place(handlers, lat=39.9055, long=116.3976)
    assert not far.ok and far.refusal.status == 422 and far.refusal.code == "too_far"
    assert "not within 150 m" in far.refusal.reason and "150 米内没有本社区楼栋" in far.refusal.reason
    assert "km away" in far.refusal.reason
    for bad in ({"lat": "39.7", "long": 115.9}, {"lat": 91, "long": 0}, {"lat": 39.7}, {"lat": True, "long": 1}):
        refused = await place(handlers, **bad)
        assert not refused.ok and refused.refusal.code == "invalid"


async def test_how_far_is_a_setting() -> None:
    point = offset(SITE.buildings["1"].centre, 200, 0)
    assert not (await place(PlaceHandlers(SITE, 150), lat=point.lat, long=point.long)).ok
    assert (await place(PlaceHandlers(SITE, 250), lat=point.lat, long=point.long)).data["id"] == "1"
