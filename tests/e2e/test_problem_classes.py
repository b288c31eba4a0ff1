"""Problem classes (一个诉求解决一类问题) over HTTP: one building's leaks become one class and one proactive whistle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.e2e.conftest import System, publish_again, wait_for

BUILDING = "19"  # no other e2e test reports roof leaks here
AGAIN = "21"  # nor here


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


def test_a_whistle_blown_again_is_grouped_once_without_an_inbox(system: System) -> None:
    """Intake groups a whistle once (`grouped_among`), so its consumer keeps no inbox row per whistle: the
    whistle.blown of a grouped whistle again, twice (one batch may hold both), is taken without a failure,
    joins the class no second time and groups the whistle no second time."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    query = {"category": "roof_leak", "building": AGAIN}
    members = [system.blow(location={"building": AGAIN}, description=f"顶楼漏雨 again {i}") for i in range(2)]

    def leak() -> dict | None:
        with system.client("dispatcher") as d:
            found = d.get("/v1/classes", params=query).json()
        return found[0] if found and found[0]["size"] == 2 else None

    before = wait_for(leak, what="a class of 2")
    asyncio.run(publish_again(system, "whistle.blown.>", since, lambda e: e["whistle_id"] == members[0],
                              ("intake-events", "ledger-events"), copies=2))
    after = leak()
    assert after is not None and (after["size"], after["member_whistle_ids"]) == (2, members), after
    assert after["last_seen"] == before["last_seen"]
    grouped = [t for t in system.whistle(members[0])["timeline"] if t["type"] == "whistle.grouped"]
    assert [t["data"]["class_id"] for t in grouped] == [before["id"]]
