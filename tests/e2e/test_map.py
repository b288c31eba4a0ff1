"""The community on the map over real HTTP: buildings and grids with WGS 84 shapes, an Open311 request
placed by lat/long alone, and the api_key in the query string."""

from __future__ import annotations

import math

import httpx
import pytest

from tests.e2e.conftest import System, wait_for

BASE = "/open311/v2"
TIANANMEN = {"lat": "39.9055", "long": "116.3976"}  # 41 km from the community


@pytest.fixture(scope="module")
def http(system: System) -> httpx.Client:
    with httpx.Client(base_url=system.base_url, timeout=15) as c:
        yield c


@pytest.fixture(scope="module")
def buildings(system: System) -> dict[str, dict]:
    with system.client("dispatcher") as d:
        r = d.get("/v1/buildings")
    assert r.status_code == 200, r.text
    return {b["id"]: b for b in r.json()}


def north_of(centre: dict, metres: float) -> dict[str, str]:
    return {"lat": f"{centre['lat'] + metres / (6_371_008.8 * math.pi / 180):.7f}", "long": f"{centre['long']:.7f}"}


def test_any_token_reads_the_22_buildings_in_their_4_grids_with_shapes(system: System) -> None:
    with httpx.Client(base_url=system.base_url) as anonymous:
        assert anonymous.get("/v1/buildings").status_code == 401
    with system.client("m-b01-secretary") as member:  # a responder's token is enough
        r = member.get("/v1/buildings")
        grids = member.get("/v1/grids")
    assert r.status_code == 200 and grids.status_code == 200, (r.text, grids.text)
    listed = r.json()
    assert [b["id"] for b in listed] == [str(n) for n in range(1, 23)]
    seven = listed[6]
    assert seven["grid"] == "g2" and seven["name_zh"] == "7号楼"
    assert 39.70 < seven["centre"]["lat"] < 39.74 and 115.95 < seven["centre"]["long"] < 116.0  # Yanshan, Fangshan
    ring = seven["footprint"]["coordinates"][0]
    assert seven["footprint"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) >= 4
    assert all(115.95 < long < 116.0 and 39.70 < lat < 39.74 for long, lat in ring)  # GeoJSON order: [long, lat]
    assert {g["id"]: g["buildings"] for g in grids.json()} == {
        "g1": ["1", "2", "3", "4", "5", "6"], "g2": ["7", "8", "9", "10", "11", "12"],
        "g3": ["13", "14", "15", "16", "17"], "g4": ["18", "19", "20", "21", "22"]}


def test_lat_long_alone_is_placed_at_the_nearest_building_within_150_m(
        system: System, http: httpx.Client, buildings: dict[str, dict]) -> None:
    point = north_of(buildings["9"]["centre"], 12)  # in the lane north of building 9
    r = http.post(f"{BASE}/requests.json", data={
        "api_key": system.creds["open311_api_key"], "service_code": "noise", "description": "楼下夜里施工", **point})
    assert r.status_code == 200, r.text
    request_id = r.json()[0]["service_request_id"]
    shown = wait_for(lambda: (g := http.get(f"{BASE}/requests/{request_id}.json")).status_code == 200 and g.json()[0],
                     what="the request in the ledger")
    assert shown["address_id"] == "9" and shown["address"] == "9号楼"
    assert (shown["lat"], shown["long"]) == (float(point["lat"]), float(point["long"]))  # the point is kept
    with system.client("dispatcher") as d:
        assert d.get(f"/v1/whistles/{request_id}").json()["location"]["building"] == "9"


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_lat_long_farther_than_150_m_from_every_building_is_the_specs_400(
        system: System, http: httpx.Client, buildings: dict[str, dict], fmt: str) -> None:
    key = system.creds["open311_api_key"]
    before = http.get(f"{BASE}/requests.json", params={"service_code": "clothes_drying"}).json()
    for point in (TIANANMEN, north_of(buildings["1"]["centre"], 160)):  # far, and just out of reach
        r = http.post(f"{BASE}/requests.{fmt}", data={"api_key": key, "service_code": "clothes_drying", **point})
        assert r.status_code == 400, r.text
        if fmt == "json":
            (error,) = r.json()
            assert error["code"] == 400
            description = error["description"]
        else:
            assert r.headers["content-type"].startswith("text/xml") and b"<errors><error><code>400" in r.content
            description = r.content.decode()
        assert "not within 150 m of any building" in description and "150 米内没有本社区楼栋" in description
        assert "address_id" in description
    assert http.get(f"{BASE}/requests.json", params={"service_code": "clothes_drying"}).json() == before


def test_api_key_is_taken_from_the_query_string_too(system: System, http: httpx.Client) -> None:
    key = system.creds["open311_api_key"]
    r = http.post(f"{BASE}/requests.json", params={"api_key": key},
                  data={"service_code": "noise", "address_id": "4", "description": "query-string key"})
    assert r.status_code == 200, r.text
    request_id = r.json()[0]["service_request_id"]
    wait_for(lambda: http.get(f"{BASE}/requests/{request_id}.json").status_code == 200, what="the request")
    wrong = http.post(f"{BASE}/requests.json", params={"api_key": "not-a-key"},
                      data={"service_code": "noise", "address_id": "4"})
    assert wrong.status_code == 403, wrong.text
    missing = http.post(f"{BASE}/requests.json", data={"service_code": "noise", "address_id": "4"})
    assert missing.status_code == 403, missing.text
