"""Supervisors keep the responder registry; the next whistle routes with it. And the
authorization matrix, case by case: every refusal is 403 with a reason, and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.conftest import System, wait_for

NEW_MEMBER = {"kind": "member", "name_en": "Zhao Min (branch 10)", "name_zh": "赵敏（第10党支部党员）",
              "superior_id": "m-b10-secretary", "branch": "10", "building": "22", "skills": ["elderly_care"],
              "availability": ["mon-sun 00:00-24:00"], "max_concurrent": 2}


def test_a_supervisor_adds_a_member_who_is_summoned_next_and_can_log_in(system: System) -> None:
    with system.client("dispatcher") as d:
        assert d.put("/v1/responders/m-a-new-elder", json=NEW_MEMBER).status_code == 403
    with system.client("supervisor") as sup:
        for body, field in (({**NEW_MEMBER, "building": "99"}, "building"),
                            ({**NEW_MEMBER, "superior_id": "nobody"}, "superior_id"),
                            ({**NEW_MEMBER, "availability": ["someday"]}, "availability"),
                            ({**NEW_MEMBER, "max_concurrent": 0}, "max_concurrent")):
            r = sup.put("/v1/responders/m-a-new-elder", json=body)
            assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
        assert sup.get("/v1/responders/m-a-new-elder").status_code == 404  # refused edits changed nothing
        r = sup.put("/v1/responders/m-a-new-elder", json=NEW_MEMBER)
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        assert sup.get("/v1/responders/m-a-new-elder").json()["skills"] == ["elderly_care"]
        listed = sup.get("/v1/responders", params={"building": "22", "kind": "member", "limit": 1000}).json()
        assert "m-a-new-elder" in {x["id"] for x in listed["responders"]}
        r = sup.put("/v1/responders/m-a-new-elder", json={**NEW_MEMBER, "max_concurrent": 3})
        assert r.status_code == 200 and "token" not in r.json()
    whistle_id = system.blow(category="elderly_care", tier="routine", location={"building": "22"})
    summons = wait_for(lambda: (w := system.whistle(whistle_id)) and w.get("summons") and w["summons"][0])
    assert summons["responder_id"] == "m-a-new-elder"  # same building, nobody loaded less, first by id
    with httpx.Client(base_url=system.base_url, headers={"Authorization": f"Bearer {token}"}) as newcomer:
        wait_for(lambda: summons["id"] in {s["id"] for s in newcomer.get("/v1/summons").json()})
        assert newcomer.post(f"/v1/summons/{summons['id']}/report").status_code == 200


def test_a_deactivated_unit_is_not_summoned_its_fallback_is(system: System) -> None:
    with system.client("supervisor") as sup:
        police = sup.get("/v1/responders/d-police").json()
        body = {k: v for k, v in police.items() if k != "id"}
        assert sup.put("/v1/responders/d-police", json={**body, "active": False}).status_code == 200
        try:
            whistle_id = system.blow(category="safety_awareness", location={"building": "4"})
            assert system.wait_summons(whistle_id)["summons"][0]["responder_id"] == "s-safety"
            with system.client("dispatcher") as d:
                explained = d.get(f"/v1/whistles/{whistle_id}/routing").json()
            assert explained["choices"][0]["candidates"][0] == {
                "responder_id": "d-police", "chosen": False, "reason": "inactive or removed"}
        finally:
            assert sup.put("/v1/responders/d-police", json={**body, "active": True}).status_code == 200


def test_a_responders_record_is_read_by_dispatchers_supervisors_and_itself_only(system: System) -> None:
    for who in ("dispatcher", "supervisor", "d-property"):
        with system.client(who) as c:
            r = c.get("/v1/responders/d-property")
        assert r.status_code == 200 and r.json()["id"] == "d-property", (who, r.text)
    # another responder, a member or the ladder's command centre alike: 403, whoever's record and whether or
    # not it exists (no probing for ids)
    rung = next(r["id"] for r in system.creds["responders"] if r["kind"] == "command_centre")
    for who in ("m-b01-secretary", "d-housing", rung):
        with system.client(who) as c:
            for rid in ("d-property", "c-secretary", "no-such-one"):
                r = c.get(f"/v1/responders/{rid}")
                assert r.status_code == 403, (who, rid, r.text)
                assert r.json()["error"]["code"] == "forbidden" and " / " in r.json()["error"]["reason"]
    with system.client("supervisor") as sup:
        assert sup.get("/v1/responders/no-such-one").status_code == 404


# who may not do what: (method, path template, body, roles refused)
MATRIX = [
    ("POST", "/v1/whistles", {"category": "noise", "description": "x", "location": {"building": "1"}}, ["responder"]),
    ("GET", "/v1/whistles", None, ["responder"]),
    ("POST", "/v1/whistles/{w}/verify", None, ["responder", "supervisor"]),
    ("POST", "/v1/whistles/{w}/follow-up", {"solved": True, "satisfaction": "satisfied"}, ["responder", "supervisor"]),
    ("POST", "/v1/whistles/{w}/arbitrate", {"responder_id": "s-urban"}, ["responder", "dispatcher"]),
    ("GET", "/v1/whistles/{w}/routing", None, ["responder"]),
    ("POST", "/v1/summons/{s}/report", None, ["dispatcher", "supervisor", "other"]),
    ("POST", "/v1/summons/{s}/return", {"reason_code": "wrong_area"}, ["dispatcher", "supervisor", "other"]),
    ("POST", "/v1/summons/{s}/transfer", {"to_responder_id": "s-urban", "reason": "x"}, ["dispatcher", "other"]),
    ("POST", "/v1/summons/{s}/extension", {"new_deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(), "reason": "x"},
     ["dispatcher", "other"]),
    ("POST", "/v1/summons/{s}/extension/grant", None, ["dispatcher", "responder", "other"]),
    ("PUT", "/v1/responders/d-police", {"kind": "department", "name_en": "x", "name_zh": "x"}, ["dispatcher", "responder"]),
    ("GET", "/v1/responders", None, ["responder"]),
    ("GET", "/v1/dead-letters", None, ["dispatcher", "responder"]),
    ("GET", "/v1/rates/ranking?month=2026-11", None, ["responder"]),
]
WHO = {"responder": "d-property", "other": "m-b01-secretary", "dispatcher": "dispatcher", "supervisor": "supervisor"}


@pytest.fixture(scope="module")
def target(system: System) -> tuple[str, dict]:
    # → d-property; ebike_charging reports within 1 h in tests/e2e/policies.json, so no clock adds an
    # event to its timeline while the matrix runs, however slow the machine
    whistle_id = system.blow(category="ebike_charging", location={"building": "15"})
    return whistle_id, system.wait_summons(whistle_id)["summons"][0]


@pytest.mark.parametrize(("method", "path", "body", "refused"), MATRIX)
def test_the_authorization_matrix(system: System, target, method: str, path: str, body: dict | None, refused: list) -> None:
    whistle_id, summons = target
    assert summons["responder_id"] == "d-property"
    before = system.whistle(whistle_id)
    url = path.format(w=whistle_id, s=summons["id"])
    for role in refused:
        with system.client(WHO[role]) as c:
            r = c.request(method, url, json=body)
        assert r.status_code == 403, (role, method, url, r.text)
        assert r.json()["error"]["code"] and r.json()["error"]["reason"]
    after = system.whistle(whistle_id)
    assert [t["event_id"] for t in after["timeline"]] == [t["event_id"] for t in before["timeline"]]
    assert after["summons"] == before["summons"]
