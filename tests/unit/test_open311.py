"""Open311 GeoReport v2: the gateway's parsing and rendering, and intake's attribute checks (pure)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest

from services.gateway import open311
from services.gateway.open311 import Open311Error
from services.intake.domain import check_attributes, load_catalogue
from shared.contracts import Refusal

CATALOGUE = load_catalogue()
NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(("address", "address_id", "building"), [
    ("7号楼", None, "7"), ("北区 12号楼 3单元", None, "12"), ("Building 7, west gate", None, "7"),
    ("7", None, "7"), ("15栋", None, "15"), (None, "22", "22"), ("somewhere", "03", "3"),
])
def test_the_building_comes_from_address_id_or_the_address_string(address, address_id, building) -> None:
    assert open311.building_of(address, address_id) == building


def test_an_address_without_a_building_number_gives_none() -> None:
    assert open311.building_of("the west gate / 西门", None) is None
    assert open311.building_of(None, None) is None


def test_attributes_are_read_from_the_form_repeated_ones_as_lists() -> None:
    form = open311.parse_form("api_key=k&attribute%5Bfloor_type%5D=top_floor&attribute[problems][]=a"
                              "&attribute[problems][]=b&description=%E9%A1%B6%E6%A5%BC".encode())
    assert open311.attributes_of(form) == {"floor_type": ["top_floor"], "problems": ["a", "b"]}
    assert ("description", "顶楼") in form


def test_a_required_attribute_missing_or_a_value_off_the_list_is_refused() -> None:
    roof = CATALOGUE["roof_leak"]
    missing = check_attributes(roof, {})
    assert isinstance(missing, Refusal) and missing.code == "missing_attribute"
    assert missing.field == "attribute[floor_type]"
    off_list = check_attributes(roof, {"floor_type": ["basement"]})
    assert isinstance(off_list, Refusal) and off_list.code == "bad_attribute"
    unknown = check_attributes(roof, {"floor_type": ["other"], "colour": ["red"]})
    assert isinstance(unknown, Refusal) and unknown.code == "unknown_attribute"
    assert check_attributes(roof, {"floor_type": ["top_floor"]}) == "[attr floor_type=top_floor]"


def test_optional_attributes_may_be_left_out_and_multivaluelists_take_several_keys() -> None:
    assert check_attributes(CATALOGUE["noise"], {}) == ""
    assert check_attributes(CATALOGUE["noise"], {"time_of_day": ["夜里 / at night"]}) == "[attr time_of_day=夜里 / at night]"
    ebike = CATALOGUE["ebike_charging"]
    assert check_attributes(ebike, {"problems": ["no_charger", "indoor_charging"]}) \
        == "[attr problems=no_charger,indoor_charging]"
    assert isinstance(check_attributes(CATALOGUE["noise"], {"time_of_day": ["a", "b"]}), Refusal)


def test_categories_without_attributes_load_as_before() -> None:
    parking = CATALOGUE["fence_broken"]
    assert parking.attributes == () and parking.keywords == () and parking.default_tier == "routine"


def test_the_period_defaults_to_the_last_90_days_and_refuses_more() -> None:
    assert open311.period(None, None, NOW) == (NOW - timedelta(days=90), NOW)
    begins, ends = open311.period("2024-01-01T00:00:00Z", None, NOW)
    assert ends - begins == timedelta(days=90)
    with pytest.raises(Open311Error) as too_long:
        open311.period("2024-01-01T00:00:00Z", "2024-04-01T00:00:01Z", NOW)
    assert too_long.value.status == 400
    with pytest.raises(Open311Error):
        open311.period("yesterday", None, NOW)
    naive, _ = open311.period("2024-05-01T08:00:00", None, NOW)
    assert naive == datetime(2024, 5, 1, tzinfo=UTC)  # Beijing time when no zone is given


def test_ids_override_the_other_filters() -> None:
    assert open311.query({"service_request_id": "a, b", "status": "bogus", "start_date": "x"}) == {
        "ids": ["a", "b"], "limit": 1000}
    with pytest.raises(Open311Error):
        open311.query({"status": "pending"})


def test_a_service_and_its_definition_follow_the_spec_fields() -> None:
    roof = asdict(CATALOGUE["roof_leak"])
    service = open311.service_of(roof)
    assert service["metadata"] is True and service["type"] == "realtime" and "漏雨" in service["keywords"]
    assert open311.service_of(asdict(CATALOGUE["parking"]))["metadata"] is False
    attr = open311.definition_of(roof)["attributes"][0]
    assert attr["code"] == "floor_type" and attr["required"] is True and attr["order"] == 1
    assert attr["values"][0] == {"key": "top_floor", "name": "顶楼 / top floor"}


def test_xml_nests_lists_under_singular_items_and_keeps_chinese_bytes() -> None:
    body = open311.to_xml("service_definition", None, open311.definition_of(asdict(CATALOGUE["roof_leak"])))
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert "顶楼 / top floor".encode() in body
    root = ET.fromstring(body)
    assert root.findtext("attributes/attribute/values/value/key") == "top_floor"
    assert root.findtext("attributes/attribute/required") == "true"


def test_errors_are_the_spec_list_in_either_format() -> None:
    as_json = open311.error_response("json", 403, "api_key 无效")
    assert as_json.status_code == 403 and json.loads(as_json.body) == [{"code": 403, "description": "api_key 无效"}]
    as_xml = ET.fromstring(open311.error_response("xml", 404, "无此").body)
    assert as_xml.tag == "errors" and as_xml.findtext("error/code") == "404" and as_xml.findtext("error/description") == "无此"


def test_a_whistle_maps_onto_a_request_closed_only_when_struck_off() -> None:
    whistle = {"id": "w1", "category": "roof_leak", "description": "漏雨", "status": "dispatched",
               "location": {"building": "7"}, "attachments": ["https://x.org/a.jpg"], "raised_at": "t0",
               "updated_at": "t1", "agency_responsible": "Housing section",
               "deadlines": {"report": "r", "resolve": "s"}}
    services = {"roof_leak": open311.service_of(asdict(CATALOGUE["roof_leak"]))}
    req = open311.request_of(whistle, services)
    assert req["status"] == "open" and req["status_notes"] == "dispatched" and req["expected_datetime"] == "s"
    assert req["address"] == "7号楼" and req["address_id"] == "7" and req["media_url"] == "https://x.org/a.jpg"
    assert req["agency_responsible"] == "Housing section" and req["lat"] is None
    assert open311.request_of({**whistle, "status": "closed"}, services)["status"] == "closed"
    paused = {**whistle, "deadlines": {"report": "r", "resolve": None}}
    assert open311.request_of(paused, services)["expected_datetime"] is None
    assert open311.request_of({**whistle, "deadlines": {"report": "r"}}, services)["expected_datetime"] == "r"


def test_a_request_shows_the_building_never_the_address_and_masks_its_free_text() -> None:
    """An old ledger's row (the address, a person as the lead) still leaves the edge cut to the building."""
    whistle = {"id": "w1", "category": "noise", "status": "open", "raised_at": "t", "updated_at": "t",
               "description": "3号楼2单元501 王先生 13812345678 wang@example.org 110105199001011234",
               "location": {"building": "3", "address": "3号楼2单元501", "unit": "2"},
               "lead_responder_name": "王伟 (branch 3)", "attachments": ["https://x.org/13812345678.jpg"]}
    req = open311.request_of(whistle, {})
    assert req["address"] == "3号楼" and req["address_id"] == "3" and req["agency_responsible"] is None
    assert req["description"] == "3号楼2单元*** *先生 138****5678 w***@example.org 110***********1234"
    assert req["media_url"] == "https://x.org/138****5678.jpg"
    assert "501" not in json.dumps(req, ensure_ascii=False) and "王伟" not in json.dumps(req, ensure_ascii=False)


def test_an_unknown_format_is_a_404() -> None:
    assert open311.split_format("services.xml") == ("services", "xml")
    with pytest.raises(Open311Error):
        open311.split_format("services.csv")


def test_the_post_maps_onto_a_blow_with_source_online_and_lat_long_alone_goes_where_routing_placed_it() -> None:
    roof = asdict(CATALOGUE["roof_leak"])
    payload = open311.blow_payload({"address_string": "7号楼", "first_name": "阿姨", "last_name": "刘",
                                    "phone": "13812345678", "media_url": "https://x.org/a.jpg"},
                                   {"floor_type": ["other"]}, roof)
    assert payload["location"] == {"building": "7", "address": "7号楼"} and payload["source"] == "online"
    assert payload["reporter"] == {"name": "阿姨 刘", "phone": "13812345678", "email": None}
    assert payload["attachments"] == ["https://x.org/a.jpg"] and payload["attributes"] == {"floor_type": ["other"]}
    placed = open311.blow_payload({"lat": "39.72", "long": "115.975"}, {}, roof, placed="12")
    assert placed["location"] == {"building": "12", "lat": 39.72, "long": 115.975}
    named = open311.blow_payload({"address_id": "7", "lat": "39.72", "long": "115.975"}, {}, roof, placed="12")
    assert named["location"]["building"] == "7"  # the address the client gave wins over the point
    with pytest.raises(Open311Error) as nowhere:
        open311.blow_payload({"description": "somewhere"}, {}, roof)
    assert nowhere.value.status == 400 and "22 buildings" in nowhere.value.description
    assert "lat/long near one" in nowhere.value.description


def test_a_point_and_an_email_given_with_the_address_are_kept() -> None:
    roof = asdict(CATALOGUE["roof_leak"])
    payload = open311.blow_payload({"address_id": "7", "lat": "39.7352", "long": "116.1432",
                                    "email": "liu@example.org"}, {}, roof)
    assert payload["location"] == {"building": "7", "lat": 39.7352, "long": 116.1432}
    assert payload["reporter"] == {"name": None, "phone": None, "email": "liu@example.org"}
    for bad in ({"lat": "39.7"}, {"lat": "north", "long": "116"}, {"lat": "91", "long": "0"},
                {"lat": "nan", "long": "0"}, {"lat": "0", "long": "inf"}):
        with pytest.raises(Open311Error) as refused:
            open311.blow_payload({"address_id": "7", **bad}, {}, roof)
        assert refused.value.status == 400 and "lat" in refused.value.description
    shown = open311.request_of({"id": "x", "status": "open", "category": "roof_leak", "description": "d",
                                "raised_at": "t", "updated_at": "t",
                                "location": {"building": "7", "lat": 39.7352, "long": 116.1432}}, {})
    assert (shown["lat"], shown["long"]) == (39.7352, 116.1432)


@pytest.mark.parametrize("address_id", ["²", "٣", "1" * 5000, "-1", "3.0", "0x7", ""])
def test_an_address_id_that_is_not_ascii_digits_places_nothing(address_id) -> None:
    """'²' is a digit to isdigit() but not to int() (it was a 500); 5,000 digits are too many for int()."""
    assert open311.building_of(None, address_id) is None
    assert open311.building_of("7号楼", address_id) == "7"
    with pytest.raises(Open311Error) as err:
        open311.blow_payload({"address_id": address_id}, {}, asdict(CATALOGUE["noise"]))
    assert err.value.status == 400


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "1001"}, {"limit": "²"}, {"limit": "1" * 5000},
                                    {"limit": "-1"}, {"cursor": "%%%"}, {"cursor": "x" * 513}])
def test_a_bad_page_is_the_specs_400(params) -> None:
    with pytest.raises(Open311Error) as err:
        open311.query(params)
    assert err.value.status == 400


def test_a_page_is_asked_with_its_limit_and_cursor() -> None:
    asked = open311.query({"limit": " 5 ", "cursor": "WyJhIl0", "status": "open"})
    assert asked["limit"] == 5 and asked["cursor"] == "WyJhIl0" and asked["status"] == "open"


@pytest.mark.parametrize(("start", "end"), [
    ("0001-01-01T00:00:00+14:00", None), ("9999-12-31", None), (None, "9999-12-31T23:59:59"),
    (None, "0001-01-01"), ("9999-12-31T23:59:59-14:00", None), ("1899-12-31", "1900-01-02"),
])
def test_dates_at_the_ends_of_the_calendar_are_the_specs_400(start, end) -> None:
    """90 days before or after them is no date Python or Postgres has (they were 500s and 503s)."""
    with pytest.raises(Open311Error) as err:
        open311.period(start, end, NOW)
    assert err.value.status == 400
