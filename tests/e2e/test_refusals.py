"""401 / 403 / 409 / 422: every refusal names its reason, and changes nothing."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import System, wait_for


def _ledger_size(system: System) -> int:
    with system.client("dispatcher") as c:
        return len(c.get("/v1/whistles", params={"limit": 1000}).json())


def test_no_token_or_a_bad_token_is_401(system: System) -> None:
    import httpx

    with httpx.Client(base_url=system.base_url) as anon:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                        {"Authorization": f"Bearer {system.token('dispatcher')}x"}):
            r = anon.get("/v1/summons", headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthenticated"
        r = anon.post("/v1/whistles", json={})  # no token beats a bad body
        assert r.status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"category": "no_such_thing", "description": "x", "location": {"building": "7"}}, "category"),
        ({"category": "roof_leak", "description": "x"}, "location"),
        ({"category": "roof_leak", "description": "", "location": {"building": "7"}}, "description"),
        ({"category": "roof_leak", "description": "   ", "location": {"building": "7"}}, "description"),
        ({"category": "roof_leak", "description": "漏" * 2001, "location": {"building": "7"}}, "description"),
        ({"category": "roof_leak", "description": "x", "location": {"building": "7"}, "tier": "whenever"}, "tier"),
        ({"category": "roof_leak", "description": "x", "location": {"building": "23"}}, "location.building"),
        ({"category": "roof_leak", "description": "x", "location": {"building": "7"}, "extra": 1}, "extra"),
    ],
)
def test_bad_whistles_are_422_with_the_field_and_store_nothing(system: System, body: dict, field: str) -> None:
    before = _ledger_size(system)
    with system.client("dispatcher") as c:
        r = c.post("/v1/whistles", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field and error["reason"]
    assert _ledger_size(system) == before


def test_responders_act_only_on_their_own_summons(system: System) -> None:
    whistle_id = system.blow()
    summons = system.wait_summons(whistle_id)["summons"][0]
    assert summons["responder_id"] == "d-housing"
    with system.client("m-b01-secretary") as other:
        for action in ("report", "arrive", "resolve"):
            r = other.post(f"/v1/summons/{summons['id']}/{action}")
            assert r.status_code == 403 and r.json()["error"]["code"] == "not_your_summons"
        assert summons["id"] not in {s["id"] for s in other.get("/v1/summons").json()}
        r = other.get(f"/v1/whistles/{whistle_id}")
        assert r.status_code == 403
        r = other.post("/v1/whistles", json={"category": "noise", "description": "x", "location": {"building": "1"}})
        assert r.status_code == 403
        r = other.post(f"/v1/whistles/{whistle_id}/verify")
        assert r.status_code == 403
    with system.client("dispatcher") as dispatcher:  # dispatchers verify, they do not report
        assert dispatcher.post(f"/v1/summons/{summons['id']}/report").status_code == 403
    assert system.whistle(whistle_id)["summons"][0]["state"] == "issued"  # nothing changed
    with system.client("d-housing") as owner:
        assert owner.get(f"/v1/whistles/{whistle_id}").status_code == 200


def test_illegal_moves_are_409_and_change_nothing(system: System) -> None:
    whistle_id = system.blow()
    summons = system.wait_summons(whistle_id)["summons"][0]
    with system.client("d-housing") as housing, system.client("dispatcher") as dispatcher:
        r = housing.post(f"/v1/summons/{summons['id']}/resolve")
        assert r.status_code == 409 and r.json()["error"]["code"] == "illegal_resolve_from_issued"
        r = housing.post(f"/v1/summons/{summons['id']}/arrive")
        assert r.status_code == 409 and r.json()["error"]["code"] == "illegal_arrive_from_issued"
        r = dispatcher.post(f"/v1/whistles/{whistle_id}/verify")
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_resolved"
        assert housing.post(f"/v1/summons/{summons['id']}/report").status_code == 200
        r = housing.post(f"/v1/summons/{summons['id']}/report")
        assert r.status_code == 409 and r.json()["error"]["code"] == "illegal_report_from_reported"
    whistle = wait_for(lambda: (w := system.whistle(whistle_id))["summons"][0]["state"] == "reported" and w)
    types = [t["type"] for t in whistle["timeline"]]
    assert types.count("summons.reported") == 1
    assert "summons.resolved" not in types and "whistle.verified" not in types


def test_unknown_ids_are_404(system: System) -> None:
    with system.client("dispatcher") as c:
        assert c.get("/v1/whistles/01a21e67-0000-7000-8000-000000000000").status_code == 404
        assert c.get("/v1/whistles/not-a-uuid").status_code == 404
    with system.client("d-housing") as housing:
        r = housing.post("/v1/summons/01a21e67-0000-7000-8000-000000000000/report")
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_such_summons"


def test_categories_and_policies_are_readable(system: System) -> None:
    with system.client("m-b02-secretary") as c:
        categories = c.get("/v1/categories").json()
        assert {"code": "roof_leak", "name_en": "Roof leak", "name_zh": "屋顶漏雨"}.items() <= next(
            x for x in categories if x["code"] == "roof_leak").items()
        assert len(categories) >= 10
        policies = c.get("/v1/policies").json()
        assert policies["tiers"]["urgent"]["report_within"] == "2s"
