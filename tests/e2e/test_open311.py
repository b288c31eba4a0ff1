"""Open311 GeoReport v2 over real HTTP: services, definitions, requests in and out, tokens, the spec's errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.conftest import System, wait_for

BASE = "/open311/v2"
CHINESE = "顶楼卧室漏雨，墙皮脱落 / the top-floor bedroom leaks"


@pytest.fixture(scope="module")
def api_key(system: System) -> str:
    with system.client("supervisor") as s:
        r = s.post("/v1/api-keys", json={"client": "e2e-app", "note": "tests"})
    assert r.status_code == 201, r.text
    assert r.json()["client"] == "e2e-app"
    return r.json()["api_key"]


@pytest.fixture(scope="module")
def http(system: System) -> httpx.Client:
    with httpx.Client(base_url=system.base_url, timeout=15) as c:
        yield c


def post(http: httpx.Client, fmt: str, **form) -> httpx.Response:
    return http.post(f"{BASE}/requests.{fmt}", data=form)


def errors(r: httpx.Response, fmt: str) -> list[dict]:
    """The spec's error list, from either format."""
    if fmt == "json":
        return r.json()
    root = ET.fromstring(r.content)
    assert root.tag == "errors"
    return [{"code": int(e.findtext("code")), "description": e.findtext("description")} for e in root]


def roof_leak(http: httpx.Client, api_key: str, **extra) -> str:
    r = post(http, "json", api_key=api_key, service_code="roof_leak", address_string="7号楼 3单元",
             description=CHINESE, **{"attribute[floor_type]": "top_floor"}, **extra)
    assert r.status_code == 200, r.text
    return r.json()[0]["service_request_id"]


def wait_request(http: httpx.Client, request_id: str) -> dict:
    return wait_for(lambda: (r := http.get(f"{BASE}/requests/{request_id}.json")).status_code == 200 and r.json()[0],
                    what=f"request {request_id} in the ledger")


def test_whistle_up_writes_a_working_open311_key(system: System, http: httpx.Client) -> None:
    key = system.creds["open311_api_key"]
    r = post(http, "json", api_key=key, service_code="noise", address_id="3", description="西门夜里施工")
    assert r.status_code == 200, r.text


def test_only_supervisors_issue_api_keys(system: System) -> None:
    with system.client("dispatcher") as d:
        r = d.post("/v1/api-keys", json={"client": "mine"})
    assert r.status_code == 403


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_services_and_a_definition_in_both_formats(http: httpx.Client, fmt: str) -> None:
    services = http.get(f"{BASE}/services.{fmt}")
    definition = http.get(f"{BASE}/services/roof_leak.{fmt}")
    assert services.status_code == 200 and definition.status_code == 200
    if fmt == "json":
        by_code = {s["service_code"]: s for s in services.json()}
        attr = definition.json()["attributes"][0]
        values = attr["values"]
    else:
        assert services.headers["content-type"].startswith("text/xml")
        root = ET.fromstring(services.content)
        assert root.tag == "services"
        by_code = {s.findtext("service_code"): {c.tag: c.text for c in s} for s in root}
        droot = ET.fromstring(definition.content)
        assert droot.tag == "service_definition" and droot.findtext("service_code") == "roof_leak"
        a = droot.find("attributes/attribute")
        attr = {c.tag: c.text for c in a}
        attr["required"] = attr["required"] == "true"
        values = [{"key": v.findtext("key"), "name": v.findtext("name")} for v in a.find("values")]
    assert len(by_code) == 12 and by_code["roof_leak"]["type"] == "realtime"
    assert str(by_code["roof_leak"]["metadata"]).lower() == "true"
    assert str(by_code["parking"]["metadata"]).lower() == "false"
    assert "屋顶漏雨" in by_code["roof_leak"]["service_name"] and by_code["roof_leak"]["group"] == "房屋 / housing"
    assert attr["code"] == "floor_type" and attr["datatype"] == "singlevaluelist" and attr["required"] is True
    assert {"key": "top_floor", "name": "顶楼 / top floor"} in values


def test_a_posted_request_is_a_routed_whistle_with_attributes_phone_and_media(
        system: System, http: httpx.Client, api_key: str) -> None:
    request_id = roof_leak(http, api_key, first_name="阿姨", last_name="刘", phone="13812345678",
                           media_url="https://img.example.org/leak.jpg", email="liu@example.org",
                           jurisdiction_id="xingcheng-7.fangshan.beijing", lat="39.7352", long="116.1432")
    whistle = system.wait_summons(request_id)
    assert whistle["source"] == "online" and whistle["location"]["building"] == "7"
    assert whistle["description"] == f"{CHINESE} [attr floor_type=top_floor]"
    assert whistle["reporter"] == {"name": "阿姨 刘", "phone": "138****5678", "email": "l***@example.org",
                                   "sms_consent": False}
    assert (whistle["location"]["lat"], whistle["location"]["long"]) == (39.7352, 116.1432)
    assert whistle["attachments"] == ["https://img.example.org/leak.jpg"]
    assert whistle["raised_by"] == "dispatcher:open311:e2e-app"
    lead = next(s for s in whistle["summons"] if s["role"] == "lead")
    req = wait_for(lambda: (r := wait_request(http, request_id))["agency_responsible"] and r["expected_datetime"]
                   and r, what="lead and deadline in the Open311 view")
    assert datetime.fromisoformat(req["expected_datetime"]) > datetime.fromisoformat(req["requested_datetime"])
    assert req["agency_responsible"] == lead["responder_name"]
    assert req["status"] == "open" and req["service_code"] == "roof_leak" and req["address_id"] == "7"
    assert req["media_url"] == "https://img.example.org/leak.jpg"
    assert (req["lat"], req["long"]) == (39.7352, 116.1432)
    xml = ET.fromstring(http.get(f"{BASE}/requests/{request_id}.xml").content)
    assert (xml.findtext("request/lat"), xml.findtext("request/long")) == ("39.7352", "116.1432")
    for fmt in ("json", "xml"):
        text = http.get(f"{BASE}/requests/{request_id}.{fmt}").text
        assert "13812345678" not in text and "liu@example.org" not in text


def test_chinese_round_trips_byte_for_byte_in_json_and_xml(http: httpx.Client, api_key: str) -> None:
    request_id = roof_leak(http, api_key)
    wait_request(http, request_id)
    as_json = http.get(f"{BASE}/requests/{request_id}.json")
    as_xml = http.get(f"{BASE}/requests/{request_id}.xml")
    assert CHINESE.encode() in as_json.content and CHINESE.encode() in as_xml.content
    assert as_json.json()[0]["description"].startswith(CHINESE)
    root = ET.fromstring(as_xml.content)
    assert root.tag == "service_requests"
    assert root.findtext("request/description").startswith(CHINESE)
    assert root.findtext("request/service_request_id") == request_id
    assert as_xml.content.startswith(b"<?xml") and b"UTF-8" in as_xml.content[:60]


def test_post_answers_in_xml_too(http: httpx.Client, api_key: str) -> None:
    r = post(http, "xml", api_key=api_key, service_code="noise", address_string="building 5",
             **{"attribute[time_of_day]": "夜里"})
    assert r.status_code == 200, r.text
    root = ET.fromstring(r.content)
    assert root.tag == "service_requests" and root.findtext("request/service_request_id")
    assert root.find("request/account_id") is not None and not root.findtext("request/account_id")


def test_the_list_filters_by_ids_code_status_and_dates(http: httpx.Client, api_key: str) -> None:
    roof = roof_leak(http, api_key)
    noise = post(http, "json", api_key=api_key, service_code="noise", address_id="9",
                 description="广场舞音响太大").json()[0]["service_request_id"]
    wait_request(http, roof)
    wait_request(http, noise)

    def ids(**params) -> set[str]:
        r = http.get(f"{BASE}/requests.json", params=params)
        assert r.status_code == 200, r.text
        return {x["service_request_id"] for x in r.json()}

    assert ids(service_request_id=f"{roof},{noise}", status="closed") == {roof, noise}  # ids override the rest
    assert {roof, noise} <= ids()
    only_noise = ids(service_code="noise")
    assert noise in only_noise and roof not in only_noise
    assert {roof, noise} <= ids(status="open") and not {roof, noise} & ids(status="closed")
    now = datetime.now(UTC)
    assert {roof, noise} <= ids(start_date=(now - timedelta(hours=1)).isoformat(),
                                end_date=(now + timedelta(hours=1)).isoformat())
    assert not {roof, noise} & ids(start_date="2023-01-01T00:00:00+08:00", end_date="2023-02-01T00:00:00+08:00")
    xml = ET.fromstring(http.get(f"{BASE}/requests.xml", params={"service_request_id": roof}).content)
    assert [r.findtext("service_request_id") for r in xml] == [roof]


def test_a_token_is_the_request_id(http: httpx.Client, api_key: str) -> None:
    request_id = roof_leak(http, api_key)
    wait_request(http, request_id)
    assert http.get(f"{BASE}/tokens/{request_id}.json").json() == [
        {"token": request_id, "service_request_id": request_id}]
    root = ET.fromstring(http.get(f"{BASE}/tokens/{request_id}.xml").content)
    assert root.findtext("request/token") == request_id


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_every_error_is_the_spec_list_in_the_asked_format(http: httpx.Client, api_key: str, fmt: str) -> None:
    leak = {"service_code": "roof_leak", "address_id": "7", "attribute[floor_type]": "other"}
    cases = [
        (post(http, fmt, **leak), 403, "api_key"),
        (post(http, fmt, api_key="o311_not-a-key", **leak), 403, "api_key"),
        (post(http, fmt, api_key=api_key, **{**leak, "service_code": "potholes"}), 400, "service_code"),
        (post(http, fmt, api_key=api_key, service_code="roof_leak", address_id="7"), 400, "floor_type"),
        (post(http, fmt, api_key=api_key, **{**leak, "attribute[floor_type]": "basement"}), 400, "floor_type"),
        (post(http, fmt, api_key=api_key, service_code="noise", lat="39.7", long="116.1"), 400, "22"),
        (post(http, fmt, api_key=api_key, service_code="noise", address_id="7", lat="north"), 400, "lat"),
        (post(http, fmt, api_key=api_key, service_code="noise", address_id="7", lat="95", long="1"), 400, "lat"),
        (post(http, fmt, api_key=api_key, service_code="noise", address_id="7", email="not-an-email"), 400, "email"),
        (post(http, fmt, api_key=api_key, service_code="noise", address_id="40"), 400, "building"),
        (post(http, fmt, api_key=api_key, jurisdiction_id="chicago.il", **leak), 404, "jurisdiction"),
        (http.get(f"{BASE}/services.{fmt}", params={"jurisdiction_id": "nyc"}), 404, "jurisdiction"),
        (http.get(f"{BASE}/requests/0190a0b0-0000-7000-8000-000000000000.{fmt}"), 404, "request"),
        (http.get(f"{BASE}/requests/not-a-uuid.{fmt}"), 404, "request"),
        (http.get(f"{BASE}/tokens/0190a0b0-0000-7000-8000-000000000000.{fmt}"), 404, "request"),
        (http.get(f"{BASE}/services/potholes.{fmt}"), 404, "service"),
        (http.get(f"{BASE}/requests.{fmt}", params={"start_date": "2024-01-01T00:00:00Z",
                                                   "end_date": "2024-06-01T00:00:00Z"}), 400, "90 days"),
        (http.get(f"{BASE}/requests.{fmt}", params={"start_date": "last tuesday"}), 400, "start_date"),
        (http.get(f"{BASE}/requests.{fmt}", params={"status": "pending"}), 400, "status"),
        (http.get(f"{BASE}/nothing/here/at-all.{fmt}"), 404, "resource"),
    ]
    for r, status, mentioned in cases:
        assert r.status_code == status, (r.request.url, r.text)
        assert r.headers["content-type"].startswith("application/json" if fmt == "json" else "text/xml"), r.text
        [e] = errors(r, fmt)
        assert e["code"] == status and mentioned in e["description"], (r.request.url, e)


def test_a_json_body_is_not_a_form_and_never_a_422(http: httpx.Client, api_key: str) -> None:
    r = http.post(f"{BASE}/requests.json", json={"api_key": api_key, "service_code": "noise", "address_id": "3"})
    assert r.status_code == 400 and r.json()[0]["code"] == 400


def test_a_revoked_key_gets_the_specs_403_and_only_supervisors_revoke(system: System, http: httpx.Client) -> None:
    with system.client("supervisor") as s:
        key = s.post("/v1/api-keys", json={"client": "revoke-me"}).json()["api_key"]
        spare = s.post("/v1/api-keys", json={"client": "revoke-me"}).json()["api_key"]
    request = {"service_code": "noise", "address_id": "4", "description": "楼下烧烤到深夜"}
    assert post(http, "json", api_key=key, **request).status_code == 200
    with system.client("dispatcher") as d:
        assert d.delete("/v1/api-keys/revoke-me").status_code == 403
    assert post(http, "json", api_key=key, **request).status_code == 200  # a refused revocation changed nothing
    with system.client("supervisor") as s:
        r = s.delete("/v1/api-keys/revoke-me")
        assert r.status_code == 200 and r.json() == {"client": "revoke-me", "revoked": 2}, r.text
        again = s.delete("/v1/api-keys/revoke-me")
        assert again.status_code == 404 and again.json()["error"]["code"] == "no_such_client"
    for fmt, api_key in (("json", key), ("xml", spare)):
        r = post(http, fmt, api_key=api_key, **request)
        assert r.status_code == 403, r.text
        assert [e["code"] for e in errors(r, fmt)] == [403]
    assert post(http, "json", api_key=system.creds["open311_api_key"], **request).status_code == 200  # others unaffected
