"""Problem classes (一个诉求解决一类问题) over HTTP: one building's leaks become one class and one proactive whistle."""

from __future__ import annotations

from tests.e2e.conftest import System, wait_for

BUILDING = "19"  # no other e2e test reports roof leaks here


def test_five_complaints_about_one_buildings_leak_make_one_class_and_exactly_one_proactive_whistle(
        system: System) -> None:
    members = [system.blow(location={"building": BUILDING}, description=f"顶楼漏雨 complaint {i}") for i in range(6)]
    query = {"category": "roof_leak", "building": BUILDING}

    def classes() -> list[dict]:
        with system.client("dispatcher") as d:
            r = d.get("/v1/classes", params=query)
        assert r.status_code == 200, r.text
        return r.json()

    # grouping follows the whistle.blown events, just after each blow is answered
    (leak,) = wait_for(lambda: (found := classes()) and found[0]["size"] == 6 and found, what="a class of 6")
    assert leak["size"] == 6 and leak["member_whistle_ids"] == members and leak["status"] == "raised"
    assert leak["first_seen"] <= leak["last_seen"]

    proactive_id = leak["proactive_whistle_id"]
    assert proactive_id and proactive_id not in members
    proactive = system.wait_summons(proactive_id)  # routed like any whistle: it gets summons
    assert proactive["source"] == "proactive" and proactive["tier"] == "complex"
    assert proactive["location"]["building"] == BUILDING
    assert proactive["description"].startswith("Problem class: 5 complaints about roof_leak at building 19")
    with system.client("supervisor") as s:
        raised = s.get("/v1/classes", params={**query, "status": "raised"}).json()
        still_open = s.get("/v1/classes", params={**query, "status": "open"}).json()
    assert [c["proactive_whistle_id"] for c in raised] == [proactive_id] and still_open == []

    for whistle_id in members:  # every complainant stays attached to the class
        grouped = wait_for(lambda w=whistle_id: [t for t in system.whistle(w).get("timeline", [])
                                                 if t["type"] == "whistle.grouped"], what=f"grouped {whistle_id}")
        assert [t["data"]["class_id"] for t in grouped] == [leak["id"]]
    assert not [t for t in system.whistle(proactive_id)["timeline"] if t["type"] == "whistle.grouped"]


def test_responders_cannot_list_problem_classes(system: System) -> None:
    with system.client("d-housing") as housing:
        r = housing.get("/v1/classes")
    assert r.status_code == 403, r.text
