"""The links people get in messages, on the whole system: the one-tap report (一键报到) reports its own
summons once and refuses expired, altered or borrowed tokens; the resident's follow-up page answers
once in a browser and dies with a reopened whistle."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from shared import links
from shared.ids import utcnow
from tests.e2e.conftest import System, wait_for
from tests.e2e.notifier_fakes import Receivers
from tests.e2e.test_notifier import QUIET, add_responder, notifications, put_contacts, summon

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture(scope="module")
def receivers(system: System):
    fakes = Receivers(system.fake_http_port, system.fake_smtp_port).start()
    yield fakes
    fakes.stop()


def one_tap_path(receivers: Receivers, key: str, summons_id: str) -> str:
    """The path of the one-tap link in the WeCom message of that summons."""
    def found():
        for r in receivers.at("/wecom/send"):
            text = json.dumps(r.json(), ensure_ascii=False)
            if r.query["key"] == key and summons_id in text and "一键报到：" in text:
                return text
        return None
    text = wait_for(found, 20, what="the summons message")
    return "/a/" + re.search(r"一键报到：\S*?/a/([A-Za-z0-9_.-]+)", text).group(1)


def reports(system: System, whistle_id: str) -> list[dict]:
    return [t for t in system.whistle(whistle_id)["timeline"] if t["type"] == "summons.reported"]


def test_the_one_tap_link_reports_its_summons_once(system: System, receivers: Receivers):
    lead = f"d-ack-{uuid.uuid4().hex[:8]}"
    add_responder(system, lead)
    assert put_contacts(system, lead, {"steps": [{"channel": "wecom", "address": f"wecom-{lead}"}]}).status_code == 200
    whistle_id, summons_id = summon(system, lead)
    path = one_tap_path(receivers, f"wecom-{lead}", summons_id)
    with httpx.Client(base_url=system.base_url) as phone:
        page = phone.get(path)  # what a link previewer does: nothing happens
        assert page.status_code == 200 and 'lang="zh-CN"' in page.text and '<form method="post"' in page.text
        assert "Report" in phone.get(path, params={"lang": "en"}).text
        assert reports(system, whistle_id) == []
        first = phone.post(path)
        assert first.status_code == 200 and "已报到" in first.text
        again = phone.post(path)  # the second tap answers the first result
        assert again.status_code == 200 and "已报到" in again.text
    [reported] = wait_for(lambda: reports(system, whistle_id) or None, 10, what="the report on the ledger")
    assert reported["actor"] == f"responder:{lead}"
    with system.client(lead) as c:
        assert c.post(f"/v1/summons/{summons_id}/report").status_code == 409  # reported, by the link


def test_a_link_reported_by_other_means_says_already_reported(system: System, receivers: Receivers):
    lead = f"d-ack-{uuid.uuid4().hex[:8]}"
    add_responder(system, lead)
    assert put_contacts(system, lead, {"steps": [{"channel": "wecom", "address": f"wecom-{lead}"}]}).status_code == 200
    whistle_id, summons_id = summon(system, lead)
    path = one_tap_path(receivers, f"wecom-{lead}", summons_id)
    with system.client(lead) as c:
        assert c.post(f"/v1/summons/{summons_id}/report").status_code == 200
    with httpx.Client(base_url=system.base_url) as phone:
        late = phone.post(path, params={"lang": "en"})
    assert late.status_code == 409 and "Already reported" in late.text
    wait_for(lambda: reports(system, whistle_id), 10, what="the report on the ledger")
    assert len(reports(system, whistle_id)) == 1


def test_expired_altered_or_borrowed_links_are_refused(system: System, receivers: Receivers):
    secret = system.auth_secret
    lead, other = f"d-ack-{uuid.uuid4().hex[:8]}", f"d-ack-{uuid.uuid4().hex[:8]}"
    add_responder(system, lead)
    add_responder(system, other)
    assert put_contacts(system, lead, {"steps": [{"channel": "wecom", "address": f"wecom-{lead}"}]}).status_code == 200
    whistle_id, summons_id = summon(system, lead)
    other_whistle, other_summons = summon(system, other)
    path = one_tap_path(receivers, f"wecom-{lead}", summons_id)
    version, _, sig = path.removeprefix("/a/").split(".")
    borrowed = links.mint(secret, lead, other_summons, utcnow() + timedelta(hours=1)).split(".")[1]
    expired = links.mint(secret, lead, summons_id, utcnow() - timedelta(seconds=1))
    with httpx.Client(base_url=system.base_url) as phone:
        for method in (phone.get, phone.post):
            gone = method(f"/a/{expired}")
            assert gone.status_code == 410 and "链接已过期" in gone.text
            # another summons' claim under this link's signature
            forged = method(f"/a/{version}.{borrowed}.{sig}")
            assert forged.status_code == 403 and "链接无效" in forged.text
        # well signed but for a summons that is not the named responder's: response refuses it
        theirs = phone.post(f"/a/{links.mint(secret, lead, other_summons, utcnow() + timedelta(hours=1))}")
        assert theirs.status_code == 403
    assert reports(system, whistle_id) == [] and reports(system, other_whistle) == []


def close(system: System, whistle_id: str) -> str:
    """Report, arrive, resolve and verify the whistle: its follow-up link's path."""
    summons = system.wait_summons(whistle_id)["summons"][0]
    with system.client(summons["responder_id"]) as c:
        for step in ("report", "arrive", "resolve"):
            assert c.post(f"/v1/summons/{summons['id']}/{step}").status_code == 200
    with system.client() as d:
        r = wait_for(lambda: (r := d.post(f"/v1/whistles/{whistle_id}/verify")).status_code == 200 and r, 20,
                     what="verified")
    return r.json()["follow_up_link"]


def test_the_resident_answers_the_texted_page_once(system: System, receivers: Receivers):
    phone_no = f"139{uuid.uuid4().int % 10**8:08d}"
    whistle_id = system.blow(**QUIET, reporter={"name": "李先生", "phone": phone_no, "sms_consent": True})
    close(system, whistle_id)
    sms = wait_for(lambda: [r for r in receivers.at("/sms/sms/send") if r.json()["PhoneNumbers"] == phone_no],
                   20, what="the follow-up SMS")
    path = urlsplit(json.loads(sms[0].json()["TemplateParam"])["link"]).path
    with httpx.Client(base_url=system.base_url) as browser:
        page = browser.get(path, headers=HTML)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'lang="zh-CN"' in page.text and "基本满意" in page.text and "English" in page.text
        assert "Basically satisfied" in browser.get(path, params={"lang": "en"}, headers=HTML).text
        assert browser.get(path).json()["answered"] is False  # API clients keep JSON
        sent = browser.post(f"{path}/answer", data={"solved": "yes", "satisfaction": "satisfied"})
        assert sent.status_code == 200 and "感谢您的评价" in sent.text
        twice = browser.post(f"{path}/answer", data={"solved": "no", "satisfaction": "dissatisfied"})
        assert twice.status_code == 409 and "已回访" in twice.text
        assert browser.get(path, headers=HTML).status_code == 409
    followed = followed_ups(system, whistle_id, 1)  # once the ledger has projected it
    assert len(followed) == 1 and followed[0]["data"]["satisfaction"] == "satisfied"
    assert system.whistle(whistle_id)["status"] == "closed"


def test_the_link_of_a_reopened_whistle_is_dead(system: System):
    whistle_id = system.blow(**QUIET)
    path = close(system, whistle_id)
    with system.client() as d:  # the dispatcher's phone call: not solved, reopened (重办)
        r = d.post(f"/v1/whistles/{whistle_id}/follow-up", json={"solved": False, "satisfaction": "dissatisfied"})
        assert r.status_code == 200 and r.json()["status"] == "reopened"
    wait_for(lambda: system.whistle(whistle_id)["status"] != "closed", 20, what="reopened on the ledger")
    with httpx.Client(base_url=system.base_url) as browser:
        dead = browser.get(path, headers=HTML)
        assert dead.status_code == 410 and "已失效" in dead.text
        assert browser.get(path).json()["error"]["code"] == "link_dead"
        posted = browser.post(f"{path}/answer", data={"solved": "yes", "satisfaction": "satisfied"})
        assert posted.status_code == 410
        assert browser.post(path, json={"solved": True, "satisfaction": "satisfied"}).status_code == 410


def test_the_street_command_centre_an_escalation_reached_can_read_the_whistle_but_not_act(system: System):
    # the rung's own bearer token: an account of the registry, minted into credentials.json like every responder's
    street = {"Authorization": f"Bearer {system.token('street-command-centre')}"}
    whistle_id = system.blow(tier="complex", category="bicycle_shed")  # 3 s; 4 steps, 1 s apart
    summons_id = system.wait_summons(whistle_id)["summons"][0]["id"]
    with httpx.Client(base_url=system.base_url, headers=street) as c:
        assert c.get(f"/v1/whistles/{whistle_id}").status_code == 403  # not yet reached
        wait_for(lambda: any(t["type"] == "escalation.raised" and t["data"]["target_id"] == "street-command-centre"
                             for t in system.whistle(whistle_id)["timeline"]), 25, what="the street command step")
        seen = c.get(f"/v1/whistles/{whistle_id}")
        assert seen.status_code == 200 and seen.json()["id"] == whistle_id
        assert c.post(f"/v1/summons/{summons_id}/report").status_code == 403  # read only
        other = system.blow(**QUIET)
        system.wait_summons(other)
        assert c.get(f"/v1/whistles/{other}").status_code == 403  # only what escalated to it


def test_a_breach_reaches_the_street_command_centre_account_by_its_own_rule(system: System, receivers: Receivers):
    street = "street-command-centre"
    with system.client("supervisor") as s:  # the ladder's rungs are accounts of the registry
        rungs = s.get("/v1/responders", params={"kind": "command_centre"}).json()["responders"]
    assert [(r["id"], r["superior_id"]) for r in rungs] == [
        ("district-command-centre", None), (street, "district-command-centre")]
    hook = f"{street}-{uuid.uuid4().hex[:8]}"
    put = put_contacts(system, street, {"steps": [  # set by the centre itself, with its own token
        {"channel": "webhook", "address": f"http://127.0.0.1:{system.fake_http_port}/hook/{hook}"}]}, who=street)
    assert put.status_code == 200, put.text
    receivers.webhook_secrets[hook] = put.json()["rule"]["steps"][0]["secret"]

    # a department with no superior of its own: the routine ladder's "superior" rung is the street command centre
    lead = f"d-rung-{uuid.uuid4().hex[:8]}"
    add_responder(system, lead)
    whistle_id = system.blow()  # roof_leak, routine: 6 s to report, then the superior at once
    first = system.wait_summons(whistle_id)["summons"][0]
    with system.client(first["responder_id"]) as c:
        refused = c.post(f"/v1/summons/{first['id']}/transfer", json={"to_responder_id": street, "reason": "up"})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "not_summonable"  # told, not summoned
        moved = c.post(f"/v1/summons/{first['id']}/transfer", json={"to_responder_id": lead, "reason": "theirs"})
        assert moved.status_code == 200, moved.text
    summons_id = wait_for(lambda: next((x["id"] for x in system.whistle(whistle_id).get("summons", [])
                                        if x["responder_id"] == lead), None), 20, what="the transferred summons")
    with system.client(street) as c:
        assert c.get(f"/v1/whistles/{whistle_id}").status_code == 403  # not reached yet

    def escalated():
        return [r for r in receivers.at(f"/hook/{hook}")
                if r.json()["type"] == "escalation.raised" and r.json()["data"]["summons_id"] == summons_id]
    [delivered] = wait_for(escalated, 30, what="the escalation at the street command centre's webhook")
    assert delivered.signed and delivered.json()["data"]["whistle_id"] == whistle_id
    raised = wait_for(lambda: [t["data"] for t in system.whistle(whistle_id)["timeline"]
                               if t["type"] == "escalation.raised"], 10, what="the escalation in the timeline")
    assert [(e["level"], e["target_id"]) for e in raised] == [("superior", street)]
    sent = [n for n in notifications(system, whistle_id=whistle_id, responder_id=street)]
    assert [(n["kind"], n["channel"], n["state"]) for n in sent] == [("escalation.raised", "webhook", "delivered")]

    with system.client(street) as c:
        seen = c.get(f"/v1/whistles/{whistle_id}")
        assert seen.status_code == 200 and [x["id"] for x in seen.json()["summons"] if x["responder_id"] == lead]
        for move in ("report", "arrive", "resolve", "return"):  # read only: the summons is the department's
            assert c.post(f"/v1/summons/{summons_id}/{move}", json={"reason_code": "other", "reason": "x"}
                          if move == "return" else None).status_code == 403, move
        assert c.get("/v1/summons").json() == []  # nothing is ever handed to it
    assert not [t for t in system.whistle(whistle_id)["timeline"]
                if t["type"].startswith("summons.") and t.get("actor", "").endswith(street)]


def close_again(system: System, whistle_id: str, before: set[str]) -> str:
    """After a reopen (重办): the new summons answered and the whistle verified again; its new link's path."""
    summons = wait_for(lambda: next((s for s in system.whistle(whistle_id).get("summons", [])
                                     if s["id"] not in before and s["state"] == "issued"), None), 20,
                       what="the reopened whistle's new summons")
    with system.client(summons["responder_id"]) as c:
        wait_for(lambda: summons["id"] in {s["id"] for s in c.get("/v1/summons").json()}, what="visible to it")
        for step in ("report", "arrive", "resolve"):
            assert c.post(f"/v1/summons/{summons['id']}/{step}").status_code == 200
    with system.client() as d:
        r = wait_for(lambda: (r := d.post(f"/v1/whistles/{whistle_id}/verify")).status_code == 200 and r, 20,
                     what="verified again")
    return r.json()["follow_up_link"]


def followed_ups(system: System, whistle_id: str, n: int) -> list[dict]:
    """The whistle's follow-ups on the ledger, once there are at least `n`."""
    return wait_for(lambda: len(f := [t for t in system.whistle(whistle_id)["timeline"]
                                      if t["type"] == "whistle.followed_up"]) >= n and f, 20, what=f"{n} follow-ups")


def test_one_follow_up_per_closure_whoever_answers_first(system: System):
    """The satisfaction rate counts each closure once: a second answer, a dispatcher's or through the resident's
    link, is refused with 409 and changes nothing."""
    whistle_id = system.blow(**QUIET)
    path = close(system, whistle_id)
    with system.client() as d, httpx.Client(base_url=system.base_url) as resident:
        first = d.post(f"/v1/whistles/{whistle_id}/follow-up", json={"solved": True, "satisfaction": "satisfied"})
        assert first.status_code == 200 and first.json()["status"] == "closed"
        again = d.post(f"/v1/whistles/{whistle_id}/follow-up", json={"solved": False, "satisfaction": "dissatisfied"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "already_followed_up"
        assert " / " in again.json()["error"]["reason"]  # english / 中文
        assert resident.get(path).json()["answered"] is True  # the link is no question any more
        late = resident.post(path, json={"solved": False, "satisfaction": "dissatisfied"})
        assert late.status_code == 409 and late.json()["error"]["code"] == "already_followed_up"
        form = resident.post(f"{path}/answer", data={"solved": "no", "satisfaction": "dissatisfied"})
        assert form.status_code == 409 and "已回访" in form.text

    other = system.blow(**QUIET)  # the resident first, then the dispatcher's phone call
    link = close(system, other)
    with system.client() as d, httpx.Client(base_url=system.base_url) as resident:
        assert resident.post(link, json={"solved": True, "satisfaction": "basically_satisfied"}).status_code == 200
        called = d.post(f"/v1/whistles/{other}/follow-up", json={"solved": False, "satisfaction": "dissatisfied"})
        assert called.status_code == 409 and called.json()["error"]["code"] == "already_followed_up"
    for whistle, satisfaction in ((whistle_id, "satisfied"), (other, "basically_satisfied")):
        [followed] = followed_ups(system, whistle, 1)
        assert followed["data"]["satisfaction"] == satisfaction
        assert system.whistle(whistle)["status"] == "closed"  # the refused "dissatisfied" reopened nothing


def test_a_reopened_whistle_is_followed_up_once_more_and_its_old_link_is_gone(system: System):
    whistle_id = system.blow(**QUIET)
    old = close(system, whistle_id)
    before = {s["id"] for s in system.whistle(whistle_id)["summons"]}  # all resolved, before the reopen
    with httpx.Client(base_url=system.base_url) as resident:  # answered through the link: reopened (重办)
        r = resident.post(old, json={"solved": False, "satisfaction": "dissatisfied"})
        assert r.status_code == 200 and r.json()["status"] == "reopened"
        for gone in (resident.get(old), resident.post(old, json={"solved": True, "satisfaction": "satisfied"})):
            assert gone.status_code == 410 and gone.json()["error"]["code"] == "link_dead"
    new = close_again(system, whistle_id, before)
    assert new != old
    with system.client() as d, httpx.Client(base_url=system.base_url) as resident:
        dead = resident.get(old, headers=HTML)  # made before the reopen: dead for good
        assert dead.status_code == 410 and "已失效" in dead.text
        assert resident.post(old, json={"solved": True, "satisfaction": "satisfied"}).status_code == 410
        assert resident.get(new).json()["answered"] is False
        second = d.post(f"/v1/whistles/{whistle_id}/follow-up", json={"solved": True, "satisfaction": "satisfied"})
        assert second.status_code == 200 and second.json()["status"] == "closed"
        third = d.post(f"/v1/whistles/{whistle_id}/follow-up", json={"solved": True, "satisfaction": "satisfied"})
        assert third.status_code == 409 and third.json()["error"]["code"] == "already_followed_up"
        late = resident.post(new, json={"solved": False, "satisfaction": "dissatisfied"})
        assert late.status_code == 409 and late.json()["error"]["code"] == "already_followed_up"
    followed = followed_ups(system, whistle_id, 2)
    assert [f["data"]["satisfaction"] for f in followed] == ["dissatisfied", "satisfied"]
    assert system.whistle(whistle_id)["status"] == "closed"
