"""A whistle travels the whole loop over HTTP, and SLA clocks escalate only the unanswered."""

from __future__ import annotations

import time

from tests.e2e.conftest import System, wait_for

LOOP = [
    ("whistle.blown", "dispatcher:community-7"),
    ("summons.issued", "system:routing"),
    ("whistle.routed", "system:routing"),
    ("summons.reported", "responder:d-housing"),
    ("summons.on_site", "responder:d-housing"),
    ("summons.resolved", "responder:d-housing"),
    ("whistle.verified", "dispatcher:community-7"),
    ("whistle.closed", "dispatcher:community-7"),
]


def test_whistle_is_blown_answered_verified_and_struck_off(system: System) -> None:
    whistle_id = system.blow()
    whistle = system.wait_summons(whistle_id)
    assert whistle["status"] == "dispatched"
    (summons,) = whistle["summons"]
    assert summons["responder_id"] == "d-housing" and summons["state"] == "issued"

    with system.client("d-housing") as housing:
        mine = housing.get("/v1/summons").json()
        assert summons["id"] in {s["id"] for s in mine}
        for action, state in (("report", "reported"), ("arrive", "on_site"), ("resolve", "resolved")):
            r = housing.post(f"/v1/summons/{summons['id']}/{action}", json={"note": f"{action} done"})
            assert r.status_code == 200, r.text
            assert r.json()["state"] == state

    wait_for(lambda: system.whistle(whistle_id)["status"] == "resolved", what="resolved")
    with system.client("dispatcher") as dispatcher:
        r = dispatcher.post(f"/v1/whistles/{whistle_id}/verify", json={"note": "checked on site / 已核验"})
        assert r.status_code == 200, r.text

    closed = wait_for(lambda: (w := system.whistle(whistle_id))["status"] == "closed" and w, what="closed")
    assert [(t["type"], t["actor"]) for t in closed["timeline"]] == LOOP
    times = [t["at"] for t in closed["timeline"]]
    assert times == sorted(times)
    assert closed["summons"][0]["state"] == "resolved"
    assert closed["closed_at"] is not None
    with system.client("dispatcher") as dispatcher:
        open_ids = {w["id"] for w in dispatcher.get("/v1/whistles").json()}
        assert whistle_id not in open_ids  # struck off the ledger


def test_summons_nobody_reports_escalates_once_to_the_superior(system: System) -> None:
    whistle_id = system.blow(tier="urgent")  # test policy: report within 2 s, ladder = [superior]
    issued = system.wait_summons(whistle_id)["summons"][0]

    def escalations() -> list[dict]:
        return [t for t in system.whistle(whistle_id)["timeline"] if t["type"] in ("sla.breached", "escalation.raised")]

    wait_for(lambda: len(escalations()) >= 2, timeout=20, what="breach and escalation")
    time.sleep(3)  # a second firing would have landed by now
    events = escalations()
    assert [e["type"] for e in events] == ["sla.breached", "escalation.raised"]
    raised = events[1]["data"]
    assert raised["level"] == "superior" and raised["target_id"] == "d-housing-head" and raised["step"] == 1
    assert raised["summons_id"] == issued["id"]
    breach_at = events[0]["data"]["deadline"]
    assert events[0]["at"] >= breach_at  # never early


def test_summons_reported_in_time_never_escalates(system: System) -> None:
    whistle_id = system.blow(tier="routine")  # test policy: report within 6 s
    summons = system.wait_summons(whistle_id)["summons"][0]
    with system.client(summons["responder_id"]) as responder:
        assert responder.post(f"/v1/summons/{summons['id']}/report").status_code == 200
    time.sleep(8)  # past the deadline
    types = [t["type"] for t in system.whistle(whistle_id)["timeline"]]
    assert "summons.reported" in types
    assert not [t for t in types if t.startswith(("sla.", "escalation."))]
