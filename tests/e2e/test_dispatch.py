"""The three reports in practice: joint whistles, returns and arbitration, transfers, follow-up
and reopening, and the authorization matrix — over HTTP against every service."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx

from tests.e2e.conftest import ROOT, System, every_page, wait_for


def _timeline(system: System, whistle_id: str) -> list[dict]:
    return system.whistle(whistle_id)["timeline"]


def _active(whistle: dict) -> list[dict]:
    """The summons not handed on; none while the ledger has not projected the whistle yet (a 404: {})."""
    return [s for s in whistle.get("summons", []) if s["state"] not in ("returned", "transferred")]


def _wait_holder(system: System, whistle_id: str, responder_id: str) -> dict:
    """The summons of `responder_id` once the responder can see it."""
    def found():
        w = system.whistle(whistle_id)
        return next((s for s in _active(w) if s["responder_id"] == responder_id), None)

    summons = wait_for(found, timeout=20, what=f"a summons for {responder_id}")
    with system.client(responder_id) as c:
        wait_for(lambda: summons["id"] in {s["id"] for s in c.get("/v1/summons").json()}, what="visible to it")
    return summons


def _answer(system: System, summons: dict) -> None:
    with system.client(summons["responder_id"]) as c:
        for action in ("report", "arrive", "resolve"):
            r = c.post(f"/v1/summons/{summons['id']}/{action}")
            assert r.status_code == 200, r.text


def test_a_joint_whistle_resolves_only_when_the_lead_and_every_co_handler_have(system: System) -> None:
    whistle_id = system.blow(category="roof_leak", tier="complex", location={"building": "9"})
    whistle = wait_for(lambda: len((w := system.whistle(whistle_id)).get("summons", [])) == 3 and w, timeout=20,
                       what="three summons")
    roles = Counter((s["role"], s["responder_kind"]) for s in whistle["summons"])
    assert roles == Counter({("lead", "department"): 1, ("co", "department"): 1, ("co", "member"): 1})
    lead = next(s for s in whistle["summons"] if s["role"] == "lead")
    assert lead["responder_id"] == "d-housing"
    for s in whistle["summons"]:
        _wait_holder(system, whistle_id, s["responder_id"])
    _answer(system, lead)
    co = [s for s in whistle["summons"] if s["role"] == "co"]
    _answer(system, co[0])
    with system.client("dispatcher") as d:
        r = d.post(f"/v1/whistles/{whistle_id}/verify")
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_resolved"
    assert system.whistle(whistle_id)["status"] == "dispatched"
    _answer(system, co[1])
    wait_for(lambda: system.whistle(whistle_id)["status"] == "resolved", what="resolved")
    with system.client("dispatcher") as d:
        assert d.post(f"/v1/whistles/{whistle_id}/verify").status_code == 200
    routed = next(t for t in _timeline(system, whistle_id) if t["type"] == "whistle.routed")
    assert routed["data"]["rule"] == "roof-leak-joint" and len(routed["data"]["co_responder_ids"]) == 2
    with system.client("dispatcher") as d:
        explained = d.get(f"/v1/whistles/{whistle_id}/routing").json()
    assert explained["rule"] == "roof-leak-joint"
    member_choice = next(c for c in explained["choices"] if c["role"] == "co" and c["chosen"].startswith("m-"))
    assert member_choice["candidates"][0]["chosen"] is True and "repairs" in member_choice["wanted"]


def test_returns_reroute_then_a_supervisor_arbitrates_and_it_cannot_be_returned_again(system: System) -> None:
    whistle_id = system.blow(category="fence_broken", location={"building": "3"})
    first = _wait_holder(system, whistle_id, "s-urban")
    with system.client("s-urban") as urban:
        r = urban.post(f"/v1/summons/{first['id']}/return", json={})
        assert r.status_code == 422 and r.json()["error"]["field"] == "reason_code"
        r = urban.post(f"/v1/summons/{first['id']}/return", json={"reason_code": "other"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "reason"
        r = urban.post(f"/v1/summons/{first['id']}/return", json={"reason_code": "wrong_area", "note": "not ours"})
        assert r.status_code == 200 and r.json()["state"] == "returned"
    second = _wait_holder(system, whistle_id, "d-enforcement")  # rerouted, excluding who returned it
    with system.client("d-enforcement") as enforcement:
        r = enforcement.post(f"/v1/summons/{second['id']}/return", json={"reason_code": "not_our_duty"})
        assert r.status_code == 200
    wait_for(lambda: system.whistle(whistle_id)["status"] == "awaiting_arbitration", what="awaiting arbitration")
    with system.client("dispatcher") as d:
        assert d.post(f"/v1/whistles/{whistle_id}/arbitrate", json={"responder_id": "s-urban"}).status_code == 403
    with system.client("supervisor") as sup:
        r = sup.post(f"/v1/whistles/{whistle_id}/arbitrate", json={"responder_id": "nobody"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "responder_id"
        r = sup.post(f"/v1/whistles/{whistle_id}/arbitrate", json={"responder_id": "s-urban", "note": "审定: 城管科负责"})
        assert r.status_code == 200, r.text
        again = sup.post(f"/v1/whistles/{whistle_id}/arbitrate", json={"responder_id": "s-urban"})
        assert again.status_code == 409
    third = _wait_holder(system, whistle_id, "s-urban")
    assert third["id"] != first["id"]
    with system.client("s-urban") as urban:
        r = urban.post(f"/v1/summons/{third['id']}/return", json={"reason_code": "wrong_area"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "arbitrated"
    types = [(t["type"], t["actor"]) for t in _timeline(system, whistle_id)]
    assert ("summons.returned", "responder:s-urban") in types
    assert ("summons.returned", "responder:d-enforcement") in types
    assert ("whistle.arbitration_needed", "system:routing") in types
    assert ("whistle.arbitrated", "supervisor:xingcheng-street") in types


def test_a_transfer_hands_the_summons_to_the_named_responder(system: System) -> None:
    whistle_id = system.blow(category="noise", location={"building": "7"})
    summons = _wait_holder(system, whistle_id, "s-urban")
    with system.client("s-urban") as urban:
        r = urban.post(f"/v1/summons/{summons['id']}/transfer", json={"to_responder_id": "nobody", "reason": "x"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "to_responder_id"
        r = urban.post(f"/v1/summons/{summons['id']}/transfer", json={"to_responder_id": "d-enforcement"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "to_responder_id"
        r = urban.post(f"/v1/summons/{summons['id']}/transfer",
                       json={"to_responder_id": "d-enforcement", "reason": "night-time noise is enforcement's / 夜间噪音归执法队"})
        assert r.status_code == 200 and r.json()["state"] == "transferred"
    new = _wait_holder(system, whistle_id, "d-enforcement")
    assert new["role"] == "lead"
    transferred = next(t for t in _timeline(system, whistle_id) if t["type"] == "summons.transferred")
    assert transferred["actor"] == "responder:s-urban" and transferred["data"]["to_responder_id"] == "d-enforcement"


def test_a_dissatisfied_follow_up_reopens_the_whistle_and_a_satisfied_one_closes_it(system: System) -> None:
    whistle_id = system.blow(category="roof_leak", location={"building": "12"})
    first = _wait_holder(system, whistle_id, "d-housing")
    with system.client("dispatcher") as d:
        r = d.post(f"/v1/whistles/{whistle_id}/follow-up", json={"solved": True, "satisfaction": "satisfied"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_closed"
    _answer(system, first)
    wait_for(lambda: system.whistle(whistle_id)["status"] == "resolved", what="resolved")
    with system.client("dispatcher") as d:
        assert d.post(f"/v1/whistles/{whistle_id}/verify").status_code == 200
    with system.client("d-housing") as housing:  # only dispatchers record follow-ups
        r = housing.post(f"/v1/whistles/{whistle_id}/follow-up", json={"solved": True, "satisfaction": "satisfied"})
        assert r.status_code == 403
    with system.client("dispatcher") as d:
        r = d.post(f"/v1/whistles/{whistle_id}/follow-up", json={"solved": False, "satisfaction": "dissatisfied",
                                                                 "note": "still leaking / 还在漏"})
        assert r.status_code == 200 and r.json()["status"] == "reopened"
    second = wait_for(lambda: next((s for s in _active(system.whistle(whistle_id))
                                    if s["id"] != first["id"] and s["state"] == "issued"), None), what="a new summons")
    assert second["responder_id"] == "d-housing"  # the same lead
    _wait_holder(system, whistle_id, "d-housing")
    _answer(system, second)
    wait_for(lambda: system.whistle(whistle_id)["status"] == "resolved", what="resolved again")
    with system.client("dispatcher") as d:
        assert d.post(f"/v1/whistles/{whistle_id}/verify").status_code == 200
        r = d.post(f"/v1/whistles/{whistle_id}/follow-up", json={"solved": True, "satisfaction": "basically_satisfied"})
        assert r.status_code == 200 and r.json()["status"] == "closed"
    wait_for(lambda: system.whistle(whistle_id)["status"] == "closed", what="closed")
    types = [t["type"] for t in _timeline(system, whistle_id)]
    assert types.count("whistle.followed_up") == 2 and types.count("whistle.reopened") == 1
    assert types.count("whistle.closed") == 2 and types[-1] == "whistle.followed_up"


def test_200_concurrent_whistles_never_overload_a_member_or_issue_a_summons_twice(system: System) -> None:
    registry = json.loads((ROOT / "services/routing/data/registry.json").read_text())
    max_of = {r["id"]: r["max_concurrent"] for r in registry["responders"] if r["kind"] == "member"}

    async def blow_all() -> list[str]:
        headers = {"Authorization": f"Bearer {system.token('dispatcher')}"}
        async with httpx.AsyncClient(base_url=system.base_url, headers=headers, timeout=30) as c:
            async def one(i: int) -> str:
                body = {"category": "stairwell_dirty", "description": f"stairwell {i} / 楼道脏",
                        "location": {"building": str(i % 22 + 1)}}
                r = await c.post("/v1/whistles", json=body)
                assert r.status_code == 201, r.text
                return r.json()["id"]
            return await asyncio.gather(*(one(i) for i in range(200)))

    ids = asyncio.run(blow_all())
    wait_for(lambda: all(system.whistle(i).get("summons") or system.whistle(i).get("status") == "unroutable"
                         for i in ids), timeout=60, interval=1, what="200 whistles routed")
    for whistle_id in ids:
        issued = [t for t in _timeline(system, whistle_id) if t["type"] == "summons.issued"]
        assert len(issued) == 1, whistle_id
    with system.client("supervisor") as sup:
        summons = [s for page in every_page(sup, "/v1/summons", {"limit": 1000}) for s in page.json()]
    open_per_member = Counter(s["responder_id"] for s in summons
                              if s["responder_kind"] == "member" and s["state"] not in ("resolved", "returned", "transferred"))
    assert open_per_member, "members were summoned"
    over = {m: n for m, n in open_per_member.items() if n > max_of[m]}
    assert not over, over


def test_the_resident_answers_once_through_a_one_time_link(system: System) -> None:
    whistle_id = system.blow(category="roof_leak", location={"building": "14"})
    summons = _wait_holder(system, whistle_id, "d-housing")
    _answer(system, summons)
    wait_for(lambda: system.whistle(whistle_id)["status"] == "resolved", what="resolved")
    with system.client("dispatcher") as d:
        link = d.post(f"/v1/whistles/{whistle_id}/verify").json()["follow_up_link"]
    with httpx.Client(base_url=system.base_url) as resident:  # no token: the link is the credential
        about = resident.get(link).json()
        assert about["whistle_id"] == whistle_id and about["answered"] is False and "满意" in about["question"]
        r = resident.post(link, json={"solved": True, "satisfaction": "maybe"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "satisfaction"
        r = resident.post(link, json={"solved": True, "satisfaction": "satisfied", "note": "谢谢 / thanks"})
        assert r.status_code == 200 and r.json()["status"] == "closed"
        r = resident.post(link, json={"solved": False, "satisfaction": "dissatisfied"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "already_answered"
        assert resident.get(link).json()["answered"] is True
        assert resident.get("/r/not-a-real-link-at-all").status_code == 404
    followed = wait_for(lambda: [t for t in _timeline(system, whistle_id) if t["type"] == "whistle.followed_up"])
    assert followed[0]["actor"] == "resident:follow-up-link" and followed[0]["data"]["satisfaction"] == "satisfied"
