"""SLA clocks on real JetStream schedules: a report stops the ladder, a wait holds the clock,
a refused extension changes nothing, a granted one moves the deadline."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tests.e2e.conftest import System, wait_for

SLA = ("sla.warned", "sla.breached", "escalation.raised")


def _timeline(system: System, whistle_id: str) -> list[dict]:
    return system.whistle(whistle_id)["timeline"]


def _sla(system: System, whistle_id: str) -> list[dict]:
    return [t for t in _timeline(system, whistle_id) if t["type"] in SLA]


def test_a_report_stops_the_ladder(system: System) -> None:
    whistle_id = system.blow(tier="complex", category="bicycle_shed")
    summons = system.wait_summons(whistle_id)["summons"][0]
    wait_for(lambda: any(e["type"] == "escalation.raised" for e in _sla(system, whistle_id)), timeout=20,
             what="first ladder step")
    with system.client(summons["responder_id"]) as responder:
        assert responder.post(f"/v1/summons/{summons['id']}/report").status_code == 200
    wait_for(lambda: "summons.reported" in [t["type"] for t in _timeline(system, whistle_id)])
    raised_before = len([e for e in _sla(system, whistle_id) if e["type"] == "escalation.raised"])
    time.sleep(4)  # three more steps were due in this time
    raised_after = [e for e in _sla(system, whistle_id) if e["type"] == "escalation.raised"]
    assert len(raised_after) == raised_before < 4


def test_a_report_just_before_the_deadline_stops_a_firing_already_worked_out(system: System) -> None:
    """The schedule fires 2 s early (ESCALATION_TIMER_LEAD_MS) and escalation works the firing out
    then; a report after that but before the deadline must still stop it (the generation moved)."""
    whistle_id = system.blow(category="elderly_care")  # routine + elderly_care: report within 15 s, no warning
    summons = system.wait_summons(whistle_id)["summons"][0]
    started = wait_for(lambda: [t for t in _timeline(system, whistle_id) if t["type"] == "sla.started"],
                       what="sla.started")[0]
    deadline = datetime.fromisoformat(started["data"]["deadlines"]["report"])
    time.sleep(max((deadline - datetime.now(UTC)).total_seconds() - 1.2, 0))  # the timer came 2 s early
    with system.client(summons["responder_id"]) as responder:
        assert responder.post(f"/v1/summons/{summons['id']}/report").status_code == 200
    assert datetime.now(UTC) < deadline - timedelta(seconds=0.5), "reported too late to test anything"
    wait_for(lambda: "summons.reported" in [t["type"] for t in _timeline(system, whistle_id)])
    time.sleep(max((deadline - datetime.now(UTC)).total_seconds(), 0) + 3)  # well past the deadline
    assert not _sla(system, whistle_id), "the clock was stopped before its deadline"


def test_waiting_on_the_resident_holds_the_clock(system: System) -> None:
    whistle_id = system.blow(category="noise")  # routine + noise: resolve within 4 s, no warning
    summons = system.wait_summons(whistle_id)["summons"][0]
    with system.client(summons["responder_id"]) as responder:
        assert responder.post(f"/v1/summons/{summons['id']}/report").status_code == 200
        r = responder.post(f"/v1/summons/{summons['id']}/pause", json={"note": "resident not home / 居民不在家"})
        assert r.status_code == 200 and r.json()["waiting"] is True
        paused_at = time.monotonic()
        time.sleep(6)  # longer than the whole 4 s budget
        assert not _sla(system, whistle_id), "a paused clock must not breach"
        r = responder.post(f"/v1/summons/{summons['id']}/resume")
        assert r.status_code == 200 and r.json()["waiting"] is False
        resumed_at = time.monotonic()
    breach = wait_for(lambda: [e for e in _sla(system, whistle_id) if e["type"] == "sla.breached"], timeout=15,
                      what="the breach after resuming")[0]
    assert breach["data"]["clock"] == "resolve"
    assert time.monotonic() - resumed_at >= 2.0  # it resumed with the time it had left, not zero
    assert resumed_at - paused_at >= 6
    types = [t["type"] for t in _timeline(system, whistle_id)]
    assert types.index("summons.paused") < types.index("summons.resumed") < types.index("sla.breached")
    rescheduled = [t["data"] for t in _timeline(system, whistle_id) if t["type"] == "sla.rescheduled"]
    assert [r["deadline"] is None for r in rescheduled if r["clock"] == "resolve"] == [True, False]


def test_an_extension_refused_changes_nothing_and_granted_moves_the_deadline(system: System) -> None:
    whistle_id = system.blow(category="wall_flyers")  # routine + wall_flyers: resolve within 3 s
    summons = system.wait_summons(whistle_id)["summons"][0]
    sid = summons["id"]
    with system.client(summons["responder_id"]) as responder, system.client("supervisor") as supervisor:
        assert responder.post(f"/v1/summons/{sid}/report").status_code == 200
        ask = {"clock": "resolve", "reason": "paint must dry / 油漆未干",
               "new_deadline": (datetime.now(UTC) + timedelta(seconds=30)).isoformat()}
        assert responder.post(f"/v1/summons/{sid}/extension", json=ask).status_code == 200
        r = responder.post(f"/v1/summons/{sid}/extension", json=ask)
        assert r.status_code == 409 and r.json()["error"]["code"] == "extension_pending"
        r = responder.post(f"/v1/summons/{sid}/extension/grant")
        assert r.status_code == 403  # only supervisors decide
        r = supervisor.post(f"/v1/summons/{sid}/extension/refuse", json={"note": "no / 不批准"})
        assert r.status_code == 200 and r.json()["extension"]["status"] == "refused"
        r = supervisor.post(f"/v1/summons/{sid}/extension/refuse")
        assert r.status_code == 409 and r.json()["error"]["code"] == "no_extension_pending"

        new_deadline = datetime.now(UTC) + timedelta(seconds=8)
        ask["new_deadline"] = new_deadline.isoformat()
        assert responder.post(f"/v1/summons/{sid}/extension", json=ask).status_code == 200
        r = supervisor.post(f"/v1/summons/{sid}/extension/grant")
        assert r.status_code == 200 and r.json()["extension"]["status"] == "granted"
        granted_at = time.monotonic()

    time.sleep(4)  # the original 3 s deadline has long passed
    assert not [e for e in _sla(system, whistle_id) if e["type"] == "sla.breached"]
    breach = wait_for(lambda: [e for e in _sla(system, whistle_id) if e["type"] == "sla.breached"], timeout=20,
                      what="the breach at the new deadline")[0]
    assert time.monotonic() - granted_at >= 6
    breached_deadline = datetime.fromisoformat(breach["data"]["deadline"])
    assert abs((breached_deadline - new_deadline).total_seconds()) < 0.01
    types = [t["type"] for t in _timeline(system, whistle_id)]
    assert types.count("summons.extension_requested") == 2
    assert "summons.extension_refused" in types and "summons.extension_granted" in types
