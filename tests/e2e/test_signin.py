"""Signing in as people do, on the whole system: a supervisor sets a person's password on the people
page and the person signs in with it; a one-time sign-in link reaches the person on their own
channel, signs in once, and says nothing about names that do not exist; a contact rule names
someone routing knows."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from contextlib import closing
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import System, every_page, wait_for
from tests.e2e.notifier_fakes import Receivers
from tests.e2e.test_console import (
    DESKTOP,
    PHONE,
    axe_sync,
    browser,  # noqa: F401 — the module's Chromium, a fixture
    http_signed_in,
    zh_latin_left,
)
from tests.e2e.test_notifier import add_responder, notifications, put_contacts

pytestmark = pytest.mark.e2e
KIND = "account.signin_link"
SENT = "如账号存在，登录链接已发送"


@pytest.fixture(scope="module")
def receivers(system: System):
    fakes = Receivers(system.fake_http_port, system.fake_smtp_port).start()
    yield fakes
    fakes.stop()


def csrf_of(response: httpx.Response) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', response.text).group(1)


def sign_in(system: System, username: str, password: str) -> httpx.Response:
    """The sign-in form posted by someone not signed in: 303 when it worked."""
    with httpx.Client(base_url=system.base_url, timeout=15) as c:
        csrf = csrf_of(c.get("/console/signin"))
        return c.post("/console/signin", data={"csrf": csrf, "username": username, "password": password})


def set_password(client: httpx.Client, csrf: str, username: str, password: str) -> httpx.Response:
    return client.post("/console/people/password", data={"csrf": csrf, "username": username, "password": password})


def new_person(system: System, supervisor: httpx.Client, csrf: str) -> tuple[str, str]:
    """A responder of the registry with a console account, its password set on the people page."""
    person = f"d-si-{uuid.uuid4().hex[:8]}"
    add_responder(system, person)
    password = f"pw-{uuid.uuid4().hex[:10]}"
    r = set_password(supervisor, csrf, person, password)
    assert r.status_code == 303 and "notice=password_set" in r.headers["location"], r.text
    return person, password


def ask_for_link(system: System, username: str) -> httpx.Response:
    with httpx.Client(base_url=system.base_url, timeout=15) as c:
        csrf = csrf_of(c.get("/console/signin"))
        return c.post("/console/signin/link", data={"csrf": csrf, "username": username, "next": "/console/"})


def signin_links_sent(system: System) -> list[dict]:
    with system.client("supervisor") as s:
        return [n for page in every_page(s, "/v1/notifications", {"limit": 1000}) for n in page.json()
                if n["kind"] == KIND]


def routing_sql(system: System, sql: str, *args):
    async def run():
        conn = await asyncpg.connect(host=str(system.home / "pg"), user="postgres", database="postgres")
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()
    return asyncio.run(run())


# --- the people page ------------------------------------------------------------------------------


def test_a_supervisor_resets_a_responders_password_on_the_people_page_and_the_responder_signs_in_with_it(system):
    supervisor, csrf = http_signed_in(system, "supervisor")
    with closing(supervisor):
        person, first = new_person(system, supervisor, csrf)  # no account yet: the page makes one
        assert sign_in(system, person, first).status_code == 303
        listed = supervisor.get("/console/people", params={"q": person})
        assert listed.status_code == 200 and f'data-username="{person}"' in listed.text and "已设置" in listed.text
        assert 'href="/console/people"' in listed.text  # in the supervisor's nav

        second = f"pw-{uuid.uuid4().hex[:10]}"
        r = set_password(supervisor, csrf, person, second)
        assert r.status_code == 303
        shown = supervisor.get(r.headers["location"])
        assert shown.status_code == 200 and 'id="people-notice"' in shown.text and person in shown.text
    assert sign_in(system, person, first).status_code == 401  # the old one no longer works
    signed = sign_in(system, person, second)
    assert signed.status_code == 303 and "whistle_session=" in signed.headers["set-cookie"]


def test_a_short_password_is_refused_next_to_its_field_and_changes_nothing(system):
    supervisor, csrf = http_signed_in(system, "supervisor")
    with closing(supervisor):
        person, password = new_person(system, supervisor, csrf)
        before = routing_sql(system, "SELECT password_hash, updated_at FROM routing.accounts WHERE username = $1",
                             person)
        r = set_password(supervisor, csrf, person, "short")
        assert r.status_code == 422 and 'id="people-password-error"' in r.text and "至少 8 个字符" in r.text
        assert 'id="people-username-error"' not in r.text
        r = set_password(supervisor, csrf, f"nobody-{uuid.uuid4().hex[:6]}", "long enough password")
        assert r.status_code == 422 and 'id="people-username-error"' in r.text
        supervisor.cookies.set("whistle_lang", "en", path="/console/")
        r = set_password(supervisor, csrf, person, "1234567")
        assert r.status_code == 422 and "At least 8 characters." in r.text
        r = supervisor.post("/console/people/password", data={"username": person, "password": "no token at all"})
        assert r.status_code == 403  # no CSRF token
    after = routing_sql(system, "SELECT password_hash, updated_at FROM routing.accounts WHERE username = $1", person)
    assert after == before
    assert sign_in(system, person, "short").status_code == 401
    assert sign_in(system, person, password).status_code == 303


def test_the_people_page_is_for_supervisors_only(system):
    account = "SELECT password_hash, updated_at FROM routing.accounts WHERE username = 'd-property'"
    before = routing_sql(system, account)
    for who in ("dispatcher", "d-housing"):
        client, csrf = http_signed_in(system, who)
        with closing(client):
            assert client.get("/console/people").status_code == 403, who
            r = client.post("/console/people/password", data={"csrf": csrf, "username": "d-property",
                                                               "password": "taken over!"})
            assert r.status_code == 403, who
            home = client.get("/console/")
            home = client.get(home.headers["location"]) if home.status_code == 303 else home
            assert "/console/people" not in home.text
    assert routing_sql(system, account) == before


# --- sign-in links --------------------------------------------------------------------------------


def test_a_sign_in_link_reaches_the_persons_webhook_signs_in_once_and_unknown_names_get_the_same_answer(
        system: System, receivers: Receivers):
    supervisor, csrf = http_signed_in(system, "supervisor")
    with closing(supervisor):
        person, _ = new_person(system, supervisor, csrf)
    hook = f"{person}-hook"
    put = put_contacts(system, person, {"locale": "en", "steps": [
        {"channel": "webhook", "address": f"http://127.0.0.1:{system.fake_http_port}/hook/{hook}"},
        {"channel": "wecom", "address": f"wecom-{person}", "delay_s": 600}]})
    assert put.status_code == 200, put.text
    receivers.webhook_secrets[hook] = put.json()["rule"]["steps"][0]["secret"]

    asked = ask_for_link(system, person)
    assert asked.status_code == 200 and SENT in asked.text and 'id="link-sent"' in asked.text
    [delivered] = wait_for(lambda: [r for r in receivers.at(f"/hook/{hook}") if r.json()["type"] == KIND], 20,
                           what="the sign-in link at the person's webhook")
    data = delivered.json()["data"]
    assert delivered.signed and data["whistle_id"] is None and data["recipient_id"] == person
    link = data["link"]
    token = link.rsplit("/", 1)[-1]
    assert link in data["text"] and "works once" in data["text"]  # the person reads English
    path = urlsplit(link).path
    assert path == f"/console/signin/link/{token}"

    # what the notifier keeps and shows: one attempt, no event, the link nowhere whole
    [sent] = wait_for(lambda: [n for n in notifications(system, responder_id=person) if n["state"] == "delivered"],
                      10, what="the delivered row")
    assert (sent["kind"], sent["whistle_id"], sent["channel"], len(sent["attempts"])) == (KIND, None, "webhook", 1)
    assert token not in json.dumps(notifications(system, responder_id=person))
    assert not [r for r in receivers.at("/wecom/send") if r.query.get("key") == f"wecom-{person}"]  # first step only
    [stored] = routing_sql(system, "SELECT token_hash, used_at FROM routing.signin_links WHERE username = $1", person)
    assert bytes(stored["token_hash"]) == hashlib.sha256(token.encode()).digest() and stored["used_at"] is None

    # an unknown name: the same page, and nothing sent
    before = len(signin_links_sent(system))
    stranger = ask_for_link(system, f"nobody-{uuid.uuid4().hex[:6]}")
    strip = lambda r: re.sub(r'value="[^"]*"', "", r.text)  # noqa: E731
    assert stranger.status_code == 200 and strip(stranger) == strip(asked)

    with httpx.Client(base_url=system.base_url, timeout=15) as c:
        page = c.get(path)  # opening it (as a link preview would) spends nothing
        assert page.status_code == 200 and "whistle_session" not in page.headers.get("set-cookie", "")
        assert c.get(path).status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
        assert c.post(path, data={}).status_code == 403  # the confirm form's CSRF token is checked
        used = c.post(path, data={"csrf": csrf_of(page)})
        assert used.status_code == 303 and used.headers["location"] == "/console/summons"
        assert "whistle_session=" in used.headers["set-cookie"]
        mine = c.get("/console/summons")
        assert mine.status_code == 200 and person in mine.text
    with httpx.Client(base_url=system.base_url, timeout=15) as c:  # a second use
        again = c.post(path, data={"csrf": csrf_of(c.get(path))})
        assert again.status_code == 410 and "已使用或已过期" in again.text and "has been used" in again.text
        assert "whistle_session" not in again.headers.get("set-cookie", "")
        bogus = c.post("/console/signin/link/" + "A" * 43, data={"csrf": csrf_of(c.get(path))})
        assert bogus.status_code == 400 and "不是有效的登录链接" in bogus.text
        assert c.get("/console/board").status_code == 303  # still nobody signed in

    time.sleep(2)  # the stranger's request had its time to (wrongly) send something
    assert len(signin_links_sent(system)) == before


def test_an_expired_sign_in_link_is_refused_and_many_requests_are_slowed_down(system: System, receivers: Receivers):
    supervisor, csrf = http_signed_in(system, "supervisor")
    with closing(supervisor):
        person, _ = new_person(system, supervisor, csrf)
    hook = f"{person}-hook"
    put = put_contacts(system, person, {"steps": [
        {"channel": "webhook", "address": f"http://127.0.0.1:{system.fake_http_port}/hook/{hook}"}]})
    receivers.webhook_secrets[hook] = put.json()["rule"]["steps"][0]["secret"]
    assert ask_for_link(system, person).status_code == 200
    [delivered] = wait_for(lambda: [r for r in receivers.at(f"/hook/{hook}") if r.json()["type"] == KIND], 20,
                           what="the sign-in link")
    assert "仅可使用一次" in delivered.json()["data"]["text"]  # zh-CN by default
    path = urlsplit(delivered.json()["data"]["link"]).path
    routing_sql(system, "UPDATE routing.signin_links SET expires_at = now() - interval '1 second'"
                " WHERE username = $1", person)  # a quarter of an hour later
    with httpx.Client(base_url=system.base_url, timeout=15) as c:
        late = c.post(path, data={"csrf": csrf_of(c.get(path))})
        assert late.status_code == 410 and "whistle_session" not in late.headers.get("set-cookie", "")

    # slowed like wrong passwords, whether or not the name exists: three free, then refused (one asked already)
    stranger = f"nobody-{uuid.uuid4().hex[:6]}"
    for name, times in ((person, 3), (stranger, 4)):
        answers = [ask_for_link(system, name) for _ in range(times)]
        assert [r.status_code for r in answers] == [200] * (times - 1) + [429], name
        assert answers[-1].headers["Retry-After"] and 'id="link-error"' in answers[-1].text
    time.sleep(1)
    assert len([r for r in receivers.at(f"/hook/{hook}") if r.json()["type"] == KIND]) == 3  # the refused one: none


def test_a_contact_rule_for_an_id_nobody_has_is_404_and_changes_nothing(system: System):
    ghost = f"d-ghost-{uuid.uuid4().hex[:8]}"
    rule = {"steps": [{"channel": "wecom", "address": "wecom-robot-key"}]}
    r = put_contacts(system, ghost, rule)
    assert r.status_code == 404 and r.json()["error"]["field"] == "id", r.text
    assert "无此响应单位或账号" in r.text and "no responder or account" in r.text
    with system.client("supervisor") as s:
        assert s.get(f"/v1/responders/{ghost}/contacts").json()["source"] == "default"
    # the ladder's rungs, the desks and whom the console accounts act as are all known: a rule for them gets
    # past that check to the next, the webhook allow-list (so no test changes how they are reached)
    off_list = {"steps": [{"channel": "webhook", "address": "https://hooks.example.org/whistle"}]}
    assert put_contacts(system, ghost, off_list).status_code == 404
    for known in ("street-command-centre", "district-command-centre", "community", "community-7",
                  "xingcheng-street", "d-housing"):
        r = put_contacts(system, known, off_list)
        assert r.status_code == 422 and r.json()["error"]["code"] == "host_not_allowed", (known, r.text)


# --- the new pages in a browser: both languages, axe, screenshots ---------------------------------


def test_the_sign_in_link_pages_pass_axe_in_both_languages_with_no_english_left(
        browser, system, tmp_path):  # noqa: F811
    axe = axe_sync.Axe()
    problems: list[str] = []
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        for lang in ("zh-CN", "en"):
            context = browser.new_context(viewport=viewport, base_url=system.base_url, bypass_csp=True)
            context.add_cookies([{"name": "whistle_lang", "value": lang, "url": system.base_url + "/console/"}])
            page = context.new_page()
            page.goto("/console/signin")
            page.fill("#link-username", f"nobody-{uuid.uuid4().hex[:6]}")
            page.click("#signin-link button[type=submit]")
            page.wait_for_selector("#link-sent")
            for what in ("asked", "confirm", "refused"):
                if what == "confirm":
                    page.goto("/console/signin/link/" + "B" * 43)
                elif what == "refused":
                    page.click("#signin-link-confirm button[type=submit]")
                    page.wait_for_selector("#signin-link-refused")
                assert page.evaluate("document.documentElement.lang") == lang, (what, lang)
                if lang == "zh-CN" and (left := zh_latin_left(page)):
                    problems.append(f"zh-CN {what}: English left: {sorted(set(left))}")
                page.screenshot(path=str(tmp_path / f"signin-link-{what}-{lang}-{name}.png"), full_page=True)
                if name == "desktop":
                    found = axe.run(page).response["violations"]
                    if bad := [v["id"] for v in found if v["impact"] in ("serious", "critical")]:
                        problems.append(f"axe {lang} {what}: {bad}")
            context.close()
    print(f"screenshots in {tmp_path}")
    assert len(list(tmp_path.glob("*.png"))) == 2 * 2 * 3
    assert not problems, "\n".join(problems)


def test_the_people_of_a_deactivated_responder_are_told_why_they_are_signed_out_and_cannot_sign_in(system):
    supervisor, csrf = http_signed_in(system, "supervisor")
    with closing(supervisor):
        person, password = new_person(system, supervisor, csrf)
    unit = {"kind": "department", "name_en": f"Test {person}", "name_zh": f"测试{person}"}
    with httpx.Client(base_url=system.base_url, timeout=15) as c:
        signin_csrf = csrf_of(c.get("/console/signin"))
        assert c.post("/console/signin", data={"csrf": signin_csrf, "username": person,
                                               "password": password}).status_code == 303
        assert c.get("/console/summons").status_code == 200
        with system.client("supervisor") as api:
            assert api.put(f"/v1/responders/{person}", json={**unit, "active": False}).status_code == 200
        # the session stops working, and the sign-in page says why rather than just asking again
        gone = wait_for(lambda: (r := c.get("/console/summons")).status_code == 303 and r, timeout=2, interval=0.05)
        assert gone.headers["location"].endswith("&ended=1"), gone.headers["location"]
        page = c.get(gone.headers["location"])
        assert page.status_code == 200 and 'id="signin-error"' in page.text and "您的会话已结束" in page.text
    # the right password: told the unit is deactivated (no session); a wrong one learns nothing more
    refused = sign_in(system, person, password)
    assert refused.status_code == 403 and "您的单位已停用" in refused.text
    assert "whistle_session=" not in refused.headers.get("set-cookie", "")
    wrong = sign_in(system, person, "not-the-password")
    assert wrong.status_code == 401 and "您的单位已停用" not in wrong.text
    with system.client("supervisor") as api:
        assert api.put(f"/v1/responders/{person}", json=unit).status_code == 200  # active again
    assert sign_in(system, person, password).status_code == 303
