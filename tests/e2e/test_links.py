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
from tests.e2e.test_notifier import QUIET, add_responder, put_contacts, summon

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
    secret = (system.home / "secret").read_text().strip()
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
    followed = [t for t in system.whistle(whistle_id)["timeline"] if t["type"] == "whistle.followed_up"]
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
    secret = (system.home / "secret").read_text().strip()
    from shared import auth  # the rung's own bearer token (as the runner mints one for every responder)
    street = {"Authorization": f"Bearer {auth.mint(secret, 'responder', 'street-command-centre')}"}
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
