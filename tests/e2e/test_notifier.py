"""The notifier on the whole system, against local fake receivers: a summons reaches its responder's
first channel, the next one at its delay, then the superior; a report stops the rest; a flaky channel
is retried; bad contact rules are refused; the resident is texted the follow-up link; a kill -9 mid-burst
misses none; Postgres and NATS restarts are ridden out."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime

import httpx
import nats
import pytest

from shared import subjects
from shared.contracts import Actor, Command, Reply, ResponderKind, SummonsIssued, Tier
from shared.ids import uuid7
from tests.e2e.conftest import System, every_page, wait_for
from tests.e2e.notifier_fakes import Receivers

# 1 h to report and no warning (tests/e2e/policies.json): no clock fires while a test runs
QUIET = {"category": "ebike_charging", "description": "charging in the stairwell / 楼道充电",
         "location": {"building": "5", "unit": "2"}, "tier": "routine", "source": "hotline_12345"}
DING_SECRET = "SEC" + "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def receivers(system: System):
    fakes = Receivers(system.fake_http_port, system.fake_smtp_port).start()
    yield fakes
    fakes.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def add_responder(system: System, responder_id: str, superior: str | None = None) -> str:
    """A department of its own (no routing rule names it, so only transfers reach it); its token."""
    with system.client("supervisor") as s:
        r = s.put(f"/v1/responders/{responder_id}", json={
            "kind": "department", "name_en": f"Test {responder_id}", "name_zh": f"测试{responder_id}",
            "superior_id": superior})
    assert r.status_code == 201, r.text
    system.creds["responders"].append({"id": responder_id, "token": r.json()["token"]})
    return r.json()["token"]


def put_contacts(system: System, responder_id: str, rule: dict, who: str = "supervisor") -> httpx.Response:
    with system.client(who) as c:
        return c.put(f"/v1/responders/{responder_id}/contacts", json=rule)


def summon(system: System, responder_id: str) -> tuple[str, str]:
    """A whistle whose summons the first responder hands to `responder_id`: (whistle id, its summons id)."""
    whistle_id = system.blow(**QUIET)
    first = system.wait_summons(whistle_id)["summons"][0]
    with system.client(first["responder_id"]) as c:
        r = c.post(f"/v1/summons/{first['id']}/transfer", json={"to_responder_id": responder_id, "reason": "test"})
    assert r.status_code == 200, r.text
    whistle = wait_for(lambda: next((s for s in system.whistle(whistle_id).get("summons", [])
                                     if s["responder_id"] == responder_id), None), 20, what="the transferred summons")
    return whistle_id, whistle["id"]


def notifications(system: System, **params) -> list[dict]:
    with system.client("supervisor") as s:
        return [n for page in every_page(s, "/v1/notifications", params) for n in page.json()]


def hooks_for(receivers: Receivers, name: str, summons_id: str, kind: str = "summons.issued") -> list:
    return [r for r in receivers.at(f"/hook/{name}")
            if r.json()["type"] == kind and r.json()["data"]["summons_id"] == summons_id]


def test_a_summons_climbs_its_rule_to_the_superior_and_a_report_stops_the_rest(system: System, receivers: Receivers):
    lead, boss = unique("d-nt-lead"), unique("d-nt-boss")
    add_responder(system, boss)
    add_responder(system, lead, superior=boss)
    put = put_contacts(system, lead, {"steps": [
        {"channel": "webhook", "address": f"http://127.0.0.1:{system.fake_http_port}/hook/{lead}"},
        {"channel": "wecom", "address": f"wecom-{lead}", "mention": ["13812341234"], "delay_s": 3},
        {"target": "superior", "delay_s": 5}]})
    assert put.status_code == 200 and put.json()["created"], put.text
    receivers.webhook_secrets[lead] = put.json()["rule"]["steps"][0]["secret"]  # made for us, shown once
    assert put_contacts(system, boss, {"locale": "en", "steps": [
        {"channel": "dingtalk", "address": f"ding-{boss}", "secret": DING_SECRET},
        {"channel": "email", "address": f"{boss}@example.org", "delay_s": 1}]}).status_code == 200
    receivers.dingtalk_secrets[f"ding-{boss}"] = DING_SECRET
    with system.client("supervisor") as s:  # reads never show a secret
        shown = s.get(f"/v1/responders/{lead}/contacts").json()
    assert shown["source"] == "own" and shown["rule"]["steps"][0]["secret"] == "whsec_…"

    climbing, climbing_summons = summon(system, lead)
    reported, reported_summons = summon(system, lead)
    wait_for(lambda: hooks_for(receivers, lead, reported_summons), 20, what="the first step of the reported one")
    with system.client(lead) as c:
        assert c.post(f"/v1/summons/{reported_summons}/report").status_code == 200

    wait_for(lambda: receivers.mail_subjects(f"{boss}@example.org"), 30, what="the superior's second step")
    first = hooks_for(receivers, lead, climbing_summons)
    assert len(first) == 1 and first[0].signed and first[0].headers["webhook-id"]
    body = first[0].json()["data"]
    assert body["whistle_id"] == climbing and "楼道充电" not in body["text"]  # the category, not the description
    assert "5号楼2单元" in body["text"] and f"/console/summons/{climbing_summons}" in body["link"]
    wecom = [r for r in receivers.at("/wecom/send") if r.query["key"] == f"wecom-{lead}"
             and climbing_summons in r.json()["text"]["content"]]
    assert len(wecom) == 1 and wecom[0].json()["text"]["mentioned_mobile_list"] == ["13812341234"]
    assert wecom[0].at - first[0].at > 2  # 3 s after the summons, not with the first step
    ding = [r for r in receivers.at("/dingtalk/send") if r.query["access_token"] == f"ding-{boss}"
            and climbing_summons in r.json()["markdown"]["text"]]
    assert len(ding) == 1 and ding[0].signed and "Escalat" not in ding[0].json()["markdown"]["title"]
    assert ding[0].at - first[0].at > 4 and "New summons" in ding[0].json()["markdown"]["title"]  # boss reads English
    assert receivers.mail_subjects(f"{boss}@example.org") == ["新派单：电动车充电难 / New summons: E-bike charging"]

    time.sleep(4)  # past every step of the reported one
    assert len(hooks_for(receivers, lead, reported_summons)) == 1
    assert not [r for r in receivers.at("/wecom/send") if reported_summons in r.json()["text"]["content"]]
    states = {(n["recipient_id"], n["step"]): n["state"] for n in notifications(system, whistle_id=reported)
              if n["kind"] == "summons.issued"}
    assert states == {(lead, "1"): "delivered", (lead, "2"): "cancelled", (boss, "3.1"): "cancelled",
                      (boss, "3.2"): "cancelled"}
    sent = {(n["recipient_id"], n["step"], n["channel"], n["state"], len(n["attempts"]))
            for n in notifications(system, whistle_id=climbing) if n["kind"] == "summons.issued"}
    assert sent == {(lead, "1", "webhook", "delivered", 1), (lead, "2", "wecom", "delivered", 1),
                    (boss, "3.1", "dingtalk", "delivered", 1), (boss, "3.2", "email", "delivered", 1)}
    timeline = system.whistle(climbing)["timeline"]
    delivered = [t for t in timeline if t["type"] == "notification.sent"]
    assert len(delivered) >= 4 and all(t["data"]["whistle_id"] == climbing for t in delivered)
    assert {t["data"]["channel"] for t in delivered} >= {"webhook", "wecom", "dingtalk", "email"}
    assert all(t["data"]["address"] in (None,) or "13812341234" not in t["data"]["address"] for t in delivered)


def test_a_channel_answering_500_twice_is_delivered_once_on_the_third_attempt(system: System, receivers: Receivers):
    lead = unique("d-nt-flaky")
    add_responder(system, lead)
    receivers.scripts[lead] = [500, 500]
    secret = "whsec_" + "Zmxha3ktc2VjcmV0LWZsYWt5LXNlY3JldC0xMjM0NTY="
    receivers.webhook_secrets[lead] = secret
    put = put_contacts(system, lead, {"steps": [
        {"channel": "webhook", "address": f"http://127.0.0.1:{system.fake_http_port}/hook/{lead}", "secret": secret}]})
    assert put.status_code == 200 and put.json()["rule"]["steps"][0]["secret"] == secret
    whistle_id, summons_id = summon(system, lead)
    wait_for(lambda: [n for n in notifications(system, whistle_id=whistle_id, state="delivered")], 30,
             what="delivered after two 500s")
    seen = hooks_for(receivers, lead, summons_id)
    assert [r.status for r in seen] == [500, 500, 200]
    assert len({r.headers["webhook-id"] for r in seen}) == 1 and all(r.signed for r in seen)
    [shown] = [n for n in notifications(system, responder_id=lead) if n["kind"] == "summons.issued"]
    assert shown["state"] == "delivered" and shown["id"] == seen[0].headers["webhook-id"]
    assert [(a["attempt"], a["outcome"], a["status"]) for a in shown["attempts"]] == [
        (1, "retry", 500), (2, "retry", 500), (3, "delivered", 200)]
    def attempts_in_timeline():  # the ledger writes the timeline from the events, a moment after the notifier
        return [(t["type"], t["data"]["attempt"], t["data"].get("final"))
                for t in system.whistle(whistle_id)["timeline"] if t["type"].startswith("notification.")]
    attempts = wait_for(lambda: (a := attempts_in_timeline()) and a[-1][0] == "notification.sent" and a, 10,
                        what="the third attempt in the timeline")
    assert attempts == [("notification.failed", 1, False), ("notification.failed", 2, False),
                        ("notification.sent", 3, None)]
    with system.client(lead) as c:  # responders do not read the delivery log
        assert c.get("/v1/notifications").status_code == 403


@pytest.mark.parametrize(("step", "field", "code"), [
    ({"channel": "fax", "address": "010-1234"}, "steps.0.channel", "invalid"),
    ({"channel": "webhook", "address": "http//nowhere"}, "steps.0.address", "invalid"),
    ({"channel": "webhook", "address": "https://hooks.elsewhere.example/x"}, "steps.0.address", "host_not_allowed"),
    ({"channel": "sms", "address": "10086"}, "steps.0.address", "invalid"),
    ({"channel": "email", "address": "zhang@"}, "steps.0.address", "invalid"),
    ({"channel": "wecom", "address": "robot-key-1", "mention": ["12345"]}, "steps.0.mention", "invalid"),
])
def test_a_bad_contact_rule_is_422_naming_the_field_and_changes_nothing(system: System, step, field, code):
    r = put_contacts(system, "d-property", {"steps": [step]})
    assert r.status_code == 422 and (r.json()["error"]["field"], r.json()["error"]["code"]) == (field, code), r.text
    with system.client("supervisor") as s:
        assert s.get("/v1/responders/d-property/contacts").json()["source"] == "default"


def test_only_a_supervisor_or_the_responder_itself_sets_a_rule(system: System):
    rule = {"steps": [{"channel": "sms", "address": "13812341234"}]}
    assert put_contacts(system, "d-property", rule, who="d-housing").status_code == 403
    assert put_contacts(system, "d-property", rule, who="dispatcher").status_code == 403
    own = unique("d-nt-self")
    add_responder(system, own)
    r = put_contacts(system, own, rule, who=own)
    assert r.status_code == 200 and r.json()["rule"]["steps"][0]["address"] == "13812341234"


def test_the_resident_who_agreed_is_texted_the_follow_up_link_and_no_one_else(system: System, receivers: Receivers):
    agreed = system.blow(**QUIET, reporter={"name": "王女士", "phone": "13987654321", "sms_consent": True})
    silent = system.blow(**QUIET, reporter={"phone": "13900000000"})
    links = {}
    for whistle_id in (agreed, silent):
        summons = system.wait_summons(whistle_id)["summons"][0]
        with system.client(summons["responder_id"]) as c:
            for step in ("report", "arrive", "resolve"):
                assert c.post(f"/v1/summons/{summons['id']}/{step}").status_code == 200
        with system.client() as d:
            r = wait_for(lambda: (r := d.post(f"/v1/whistles/{whistle_id}/verify")).status_code == 200 and r, 20,
                         what="verified")
            links[whistle_id] = r.json()["follow_up_link"]
    sms = wait_for(lambda: [r for r in receivers.at("/sms/sms/send") if r.json()["PhoneNumbers"] == "13987654321"],
                   20, what="the follow-up SMS")
    assert len(sms) == 1
    body = sms[0].json()
    params = json.loads(body["TemplateParam"])
    assert body["TemplateCode"] == "SMS_WHISTLE_FOLLOW_UP" and params["link"].endswith(links[agreed])
    assert params["category"] == "电动车充电难" and sms[0].headers["authorization"] == "Bearer fake-sms-key"
    with httpx.Client(base_url=system.base_url) as anyone:  # the texted link is the resident's one link
        assert anyone.get(links[agreed]).json()["answered"] is False
    [note] = notifications(system, whistle_id=agreed)
    assert (note["recipient_id"], note["channel"], note["state"], note["address"]) == (
        "resident", "sms", "delivered", None)
    assert wait_for(lambda: [t["data"]["address"] for t in system.whistle(agreed)["timeline"]
                             if t["type"] == "notification.sent"], 10, what="the SMS in the timeline") == ["139****4321"]
    time.sleep(1)
    assert not [r for r in receivers.at("/sms/sms/send") if r.json()["PhoneNumbers"] == "13900000000"]
    assert notifications(system, whistle_id=silent) == []
    assert "13987654321" not in (system.home / "logs" / "notifier.log").read_text()


async def publish_summons(system: System, responder_id: str, n: int) -> list[str]:
    """`n` summons issued at once, straight into JetStream (as routing would): their ids."""
    nc = await nats.connect(system.nats_url)
    js = nc.jetstream()
    ids = []
    try:
        acks = []
        for _ in range(n):
            event = SummonsIssued(
                occurred_at=datetime.now(UTC), whistle_id=uuid7(), actor="system:test", summons_id=uuid7(),
                responder_id=responder_id, responder_kind=ResponderKind.department, responder_name="Burst",
                category="ebike_charging", tier=Tier.routine)
            ids.append(str(event.summons_id))
            acks.append(js.publish(event.published_subject, event.model_dump_json().encode(),
                                   headers={"Nats-Msg-Id": str(event.event_id)}))
        await asyncio.gather(*acks)
    finally:
        await nc.close()
    return ids


def test_kill_9_mid_burst_misses_none_and_repeats_only_what_was_in_flight(system: System, receivers: Receivers):
    lead, n = unique("d-nt-burst"), 400
    add_responder(system, lead)  # a contact rule names someone routing knows
    receivers.delay_s[lead] = 0.05  # attempts stay out long enough for the kill to catch some
    secret = "whsec_" + "YnVyc3Qtc2VjcmV0LWJ1cnN0LXNlY3JldC0xMjM0NTY="
    receivers.webhook_secrets[lead] = secret
    assert put_contacts(system, lead, {"steps": [
        {"channel": "webhook", "address": f"http://127.0.0.1:{system.fake_http_port}/hook/{lead}",
         "secret": secret}]}).status_code == 200
    before = system.pids()["notifier"]
    ids = asyncio.run(publish_summons(system, lead, n))
    wait_for(lambda: len(receivers.at(f"/hook/{lead}")) >= 40, 30, interval=0.01, what="the burst under way")
    os.kill(before, signal.SIGKILL)
    killed_at, got_at_kill = time.time(), len(receivers.at(f"/hook/{lead}"))
    wait_for(lambda: system.pids().get("notifier") not in (None, before), 30, what="the notifier restarted")

    def by_summons() -> dict[str, list]:
        out: dict[str, list] = {}
        for r in receivers.at(f"/hook/{lead}"):
            out.setdefault(r.json()["data"]["summons_id"], []).append(r)
        return out

    # the attempts out at the kill were received but not recorded: they go again when their lease ends
    def all_delivered() -> bool:
        with system.client("supervisor") as s:  # 503 while the notifier restarts
            r = s.get("/v1/notifications", params={"responder_id": lead, "state": "delivered", "limit": 1000})
        return r.status_code == 200 and len(r.json()) == n

    wait_for(all_delivered, 90, interval=1, what="every notification delivered")
    got = by_summons()
    assert set(got) == set(ids)
    assert got_at_kill < n, "the kill came after the burst"
    repeats = {s: rs for s, rs in got.items() if len(rs) > 1}
    assert all(len({r.headers["webhook-id"] for r in rs}) == 1 for rs in got.values())  # same message id
    assert all(len(rs) == 2 for rs in repeats.values())
    assert 0 < len(repeats) <= 128  # the kill caught attempts out, at most as many as go at once (128)
    # a repeat is an attempt that was out at the kill (sent, maybe still on its way), made again once its
    # lease ran out in the restarted notifier
    times = sorted((sorted(r.at - killed_at for r in rs) for rs in repeats.values()), key=lambda t: t[0])
    assert all(len(t) == 2 and t[0] < 0.5 and t[1] > 1.0 for t in times), [t for t in times if len(t) != 2 or not (
        t[0] < 0.5 and t[1] > 1.0)]
    shown = notifications(system, responder_id=lead)
    assert len(shown) == n and {x["state"] for x in shown} == {"delivered"}, collections.Counter(
        (x["state"], len(x["attempts"])) for x in shown)


def test_the_notifier_rides_out_a_postgres_kill_and_a_nats_kill(system: System, receivers: Receivers):
    lead = unique("d-nt-faults")
    add_responder(system, lead)
    secret = "whsec_" + "ZmF1bHRzLXNlY3JldC1mYXVsdHMtc2VjcmV0LTEyMzQ="
    receivers.webhook_secrets[lead] = secret
    assert put_contacts(system, lead, {"steps": [
        {"channel": "webhook", "address": f"http://127.0.0.1:{system.fake_http_port}/hook/{lead}",
         "secret": secret}]}).status_code == 200
    notifier = system.pids()["notifier"]

    def healthy() -> bool:
        return httpx.get(f"{system.base_url}/healthz", timeout=10).status_code == 200

    killed = system.kill_postgres()
    system.wait_postgres_adopted(other_than=killed, timeout=60)
    wait_for(healthy, 60, what="health after Postgres")
    _, after_postgres = summon(system, lead)
    wait_for(lambda: hooks_for(receivers, lead, after_postgres), 30, what="notified after the Postgres kill")

    nats_pid = system.kill_nats()
    wait_for(lambda: system.pids().get("nats") not in (None, nats_pid), 60, what="nats restarted")
    wait_for(healthy, 60, what="health after NATS")
    _, after_nats = summon(system, lead)
    wait_for(lambda: hooks_for(receivers, lead, after_nats), 30, what="notified after the NATS kill")
    assert system.pids()["notifier"] == notifier, "the notifier was restarted"
    assert len(hooks_for(receivers, lead, after_postgres)) == len(hooks_for(receivers, lead, after_nats)) == 1


def test_an_urge_reminds_the_responder_of_a_summons_not_yet_reported(system: System, receivers: Receivers):
    lead = unique("d-nt-urged")
    add_responder(system, lead)
    secret = "whsec_" + "dXJnZWQtc2VjcmV0LXVyZ2VkLXNlY3JldC0xMjM0NTY="
    receivers.webhook_secrets[lead] = secret
    assert put_contacts(system, lead, {"steps": [
        {"channel": "webhook", "address": f"http://127.0.0.1:{system.fake_http_port}/hook/{lead}",
         "secret": secret}]}).status_code == 200
    _, waiting = summon(system, lead)
    _, reported = summon(system, lead)
    with system.client(lead) as c:
        assert c.post(f"/v1/summons/{reported}/report").status_code == 200
    time.sleep(1)  # the report reaches the notifier
    assert asyncio.run(_urge(system, {"summons_ids": [waiting, reported]})) == {"urged": 1, "skipped": [reported]}
    wait_for(lambda: hooks_for(receivers, lead, waiting, kind="summons.urged"), 20, what="the reminder")
    assert not hooks_for(receivers, lead, reported, kind="summons.urged")


async def _urge(system: System, payload: dict) -> dict:
    """The console's 催办 command, sent as the gateway sends it."""
    nc = await nats.connect(system.nats_url)
    try:
        cmd = Command(actor=Actor(role="dispatcher", id="community-7"), payload=payload)
        msg = await nc.request(subjects.CMD_NOTIFIER_URGE, system.signed(subjects.CMD_NOTIFIER_URGE, cmd), timeout=10)
        reply = Reply.model_validate_json(msg.data)
    finally:
        await nc.close()
    assert reply.ok, reply
    return reply.data
