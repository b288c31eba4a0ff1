"""Reporters' personal data on the whole system: deleted everywhere WHISTLE_REPORTER_RETENTION_DAYS after the
whistle is struck off (not while it is open, nor once reopened), erased everywhere on request with only the fact
left on the timeline; the audit of a month; Open311 shows a 12345 whistle only with its reporter's consent.

Retention: the fixture has every service look for due data each second (WHISTLE_REPORTER_PURGE_EVERY_S); the
test moves each service's record of when the whistle was struck off 181 days back (the default retention is
180) rather than wait for days."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import time
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import nats
import pytest
from nats.js.errors import NotFoundError

from shared.partitions import DEFAULT_PARTITIONS, stored_subject
from tests.e2e.conftest import System, wait_for
from tests.e2e.notifier_fakes import Receivers
from tests.e2e.test_links import close
from tests.e2e.test_notifier import QUIET


@pytest.fixture(scope="module")
def receivers(system: System):
    fakes = Receivers(system.fake_http_port, system.fake_smtp_port).start()
    yield fakes
    fakes.stop()


def sql(system: System, query: str, *args) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(host=str(system.home / "pg"), user="postgres", database="postgres")
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()
    return asyncio.run(run())


def phone() -> str:
    return f"139{uuid.uuid4().int % 10**8:08d}"


def masked(number: str) -> str:
    return f"{number[:3]}****{number[-4:]}"


def resident_sms_on_timeline(system: System, whistle_id: str) -> list[dict]:
    return [t for t in system.whistle(whistle_id).get("timeline", [])
            if t["type"].startswith("notification.") and t["data"]["recipient_id"] == "resident"]


def intake_row(system: System, whistle_id: str) -> asyncpg.Record:
    [row] = sql(system, "SELECT reporter_name, reporter_phone, reporter_email, reporter_sms_consent,"
                " reporter_public_consent, description, closed_at, reopened_at, reporter_removed FROM intake.whistles"
                " WHERE id = $1", uuid.UUID(whistle_id))
    return row


def notifier_row(system: System, whistle_id: str) -> asyncpg.Record:
    [row] = sql(system, "SELECT contactable, closed_at, reopened_at, reporter_removed_at FROM notifier.whistles"
                " WHERE id = $1", uuid.UUID(whistle_id))
    return row


def resident_attempts(system: System, whistle_id: str) -> list[dict]:
    rows = sql(system, "SELECT attempt_log, answer FROM notifier.notifications WHERE whistle_id = $1"
               " AND recipient_id = 'resident'", uuid.UUID(whistle_id))
    return [{**a, "row_answer": r["answer"]} for r in rows for a in json.loads(r["attempt_log"])]


def gone_everywhere(system: System, whistle_id: str, why: str, name: str, number: str, email: str) -> None:
    """Nothing of the reporter left in intake, the ledger (view and timeline) or the notifier."""
    row = intake_row(system, whistle_id)
    assert (row["reporter_name"], row["reporter_phone"], row["reporter_email"], row["reporter_sms_consent"],
            row["reporter_public_consent"], row["reporter_removed"]) == (None, None, None, False, False, why)
    assert number not in row["description"] and name not in row["description"]
    view = system.whistle(whistle_id)
    assert view["reporter"]["removed"] == why and set(view["reporter"]) <= {"removed", "removed_at", "public_consent"}
    shown = json.dumps(view, ensure_ascii=False)
    for trace in (name, number, masked(number), email, email[0] + "***@"):
        assert trace not in shown, trace
    [blown] = [t for t in view["timeline"] if t["type"] == "whistle.blown"]
    assert blown["data"]["reporter"] is None
    sms = resident_sms_on_timeline(system, whistle_id)
    assert sms and all(t["data"]["address"] is None and t["data"]["answer"] is None for t in sms)
    assert notifier_row(system, whistle_id)["contactable"] is False
    attempts = resident_attempts(system, whistle_id)
    assert attempts and all(a["address"] is None and a["answer"] is None and a["row_answer"] is None for a in attempts)
    with system.client() as d:
        [note] = [n for n in d.get("/v1/notifications", params={"whistle_id": whistle_id}).json()
                  if n["recipient_id"] == "resident"]
    assert note["attempts"] and all(a["address"] is None for a in note["attempts"])


def texted(system: System, whistle_id: str, number: str) -> None:
    """The follow-up SMS went out, and its attempt is on the timeline with the number masked."""
    wait_for(lambda: [t for t in resident_sms_on_timeline(system, whistle_id)
                      if t["data"]["address"] == masked(number)], 30, what="the follow-up SMS on the timeline")


def test_retention_purges_a_struck_off_whistles_reporter_everywhere_and_keeps_open_and_reopened_ones(
        system: System, receivers: Receivers):
    gone_no, reopened_no, open_no = phone(), phone(), phone()
    gone = system.blow(**{**QUIET, "description": f"楼道充电，请联系钱先生 {gone_no} / call Mr Qian"},
                       reporter={"name": "钱先生", "phone": gone_no, "email": "qian@example.org", "sms_consent": True})
    reopened = system.blow(**QUIET, reporter={"name": "赵女士", "phone": reopened_no, "sms_consent": True})
    still_open = system.blow(**QUIET, reporter={"name": "孙先生", "phone": open_no})
    close(system, gone)
    close(system, reopened)
    with system.client() as d:  # not solved: reopened (重办), open again
        r = d.post(f"/v1/whistles/{reopened}/follow-up", json={"solved": False, "satisfaction": "dissatisfied"})
        assert r.status_code == 200 and r.json()["status"] == "reopened", r.text
    texted(system, gone, gone_no)
    ids = [uuid.UUID(gone), uuid.UUID(reopened)]
    # every service knows when each was struck off (and reopened) before that time is moved back
    wait_for(lambda: all(intake_row(system, w)["closed_at"] and notifier_row(system, w)["closed_at"] for w in
                         (gone, reopened)) and intake_row(system, reopened)["reopened_at"]
             and notifier_row(system, reopened)["reopened_at"], 30, what="the closes and the reopen seen")
    wait_for(lambda: system.whistle(gone)["status"] == "closed" and system.whistle(reopened)["status"] != "closed",
             30, what="the ledger's statuses")
    for table in ("intake.whistles", "notifier.whistles", "ledger.whistles"):
        sql(system, f"UPDATE {table} SET closed_at = closed_at - interval '181 days' WHERE id = ANY($1::uuid[])", ids)

    wait_for(lambda: intake_row(system, gone)["reporter_removed"] and notifier_row(system, gone)["reporter_removed_at"]
             and system.whistle(gone)["reporter"].get("removed"), 30, what="the purge in every service")
    gone_everywhere(system, gone, "retention", "钱先生", gone_no, "qian@example.org")

    time.sleep(2)  # two more rounds of every purge: the other two stay
    for whistle_id, name, number in ((reopened, "赵女士", reopened_no), (still_open, "孙先生", open_no)):
        row = intake_row(system, whistle_id)
        assert (row["reporter_name"], row["reporter_phone"], row["reporter_removed"]) == (name, number, None)
        reporter = system.whistle(whistle_id)["reporter"]
        assert (reporter["name"], reporter["phone"]) == (name, masked(number))
    assert notifier_row(system, reopened)["contactable"] is True
    assert notifier_row(system, reopened)["reporter_removed_at"] is None


def test_a_supervisor_erases_a_reporter_everywhere_and_the_timeline_keeps_only_the_fact(
        system: System, receivers: Receivers):
    number = phone()
    whistle_id = system.blow(**{**QUIET, "description": f"孟阿姨反映楼道充电 {number}"},
                             reporter={"name": "孟阿姨", "phone": number, "email": "meng@example.org",
                                       "sms_consent": True, "public_consent": True})
    close(system, whistle_id)
    texted(system, whistle_id, number)
    path = f"/v1/whistles/{whistle_id}/erase-reporter"
    body = {"reason": "孟阿姨本人来电申请删除 / the reporter asked by phone, ref 2026-118"}
    for who in ("dispatcher", system.wait_summons(whistle_id)["summons"][0]["responder_id"]):
        with system.client(who) as c:
            refused = c.post(path, json=body)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "supervisor_only", refused.text
    assert intake_row(system, whistle_id)["reporter_phone"] == number  # a refusal changes nothing
    with system.client("supervisor") as s:
        assert s.post(path, json={"reason": ""}).json()["error"]["field"] == "reason"
        first = s.post(path, json=body)
        assert first.status_code == 200 and first.json() == {"whistle_id": whistle_id, "erased": True,
                                                             "already": False}, first.text
        again = s.post(path, json=body)
        assert again.status_code == 200 and again.json()["already"] is True
        missing = s.post(f"/v1/whistles/{uuid.uuid4()}/erase-reporter", json=body)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_such_whistle"

    wait_for(lambda: system.whistle(whistle_id)["reporter"].get("removed")
             and notifier_row(system, whistle_id)["reporter_removed_at"], 30, what="the erasure taken everywhere")
    gone_everywhere(system, whistle_id, "erasure", "孟阿姨", number, "meng@example.org")
    view = system.whistle(whistle_id)
    assert "public_consent" not in view["reporter"]  # an erasure withdraws the consent to publication too
    erased = [t for t in view["timeline"] if t["type"] == "whistle.reporter_erased"]
    assert len(erased) == 1, erased  # the second request changed nothing
    [fact] = erased
    supervisor = system.creds["supervisor"]["id"]
    assert fact["actor"] == f"supervisor:{supervisor}" and fact["at"]
    assert "ref 2026-118" in fact["data"]["reason"] and "孟阿姨" not in fact["data"]["reason"]
    with httpx.Client(base_url=system.base_url) as anyone:  # withdrawn from Open311 with the rest
        assert anyone.get(f"/open311/v2/requests/{whistle_id}.json").status_code == 404
    # and from the event log: its whistle.blown is deleted, the whistle's other events stay
    wait_for(lambda: asyncio.run(stored(system, "whistle.blown", whistle_id)) == [], 30,
             what="the whistle.blown deleted from the event log")
    assert asyncio.run(stored(system, "whistle.closed", whistle_id)), "the whistle's other events are kept"


def test_an_erased_reporters_event_stays_in_the_log_until_every_consumer_has_taken_it(system: System):
    """The notifier frozen: it has not taken the whistle.blown when the reporter is erased, so the admin
    must not delete it from the log yet (the notifier would never learn of the whistle); once it has, it goes."""
    kept_until_the_notifier_takes_it(system, "冯先生", lambda: None)


def test_an_erased_reporters_event_waits_for_a_consumer_nats_forgot_in_a_restart(system: System):
    """The notifier frozen, then NATS killed -9: the notifier's partition consumers lived in NATS's memory
    and are gone until it makes them again from its floors. The admin must not take their absence for
    "every consumer has it": the whistle.blown stays until the notifier is back and has taken it."""
    def kill_nats() -> None:
        killed = system.pids()["nats"]
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: system.pids().get("nats") not in (None, killed), 60, what="nats restarted")

    kept_until_the_notifier_takes_it(system, "卫女士", kill_nats)


def kept_until_the_notifier_takes_it(system: System, name: str, meanwhile) -> None:
    """A whistle blown while the notifier is frozen, `meanwhile` done, its reporter erased: the log keeps
    its whistle.blown until the notifier, thawed, has taken it, then deletes it."""
    notifier = system.pids()["notifier"]
    os.kill(notifier, signal.SIGSTOP)
    try:
        whistle_id = system.blow(**QUIET, reporter={"name": name, "phone": phone()})
        meanwhile()
        with system.client("supervisor") as s:
            wait_for(lambda: s.post(f"/v1/whistles/{whistle_id}/erase-reporter",
                                    json={"reason": "asked in person / 本人申请"}).status_code == 200, 60,
                     what="the erasure taken")
        wait_for(lambda: (system.whistle(whistle_id).get("reporter") or {}).get("removed") == "erasure", 60,
                 what="the erasure taken by the ledger")
        time.sleep(3)  # the admin's erasure sees it again every 2 s
        assert asyncio.run(stored(system, "whistle.blown", whistle_id)), "deleted before the notifier took it"
    finally:
        os.kill(notifier, signal.SIGCONT)
    wait_for(lambda: asyncio.run(stored(system, "whistle.blown", whistle_id)) == [], 60,
             what="the whistle.blown deleted once the notifier took it")
    assert sql(system, "SELECT 1 FROM notifier.whistles WHERE id = $1", uuid.UUID(whistle_id)), "the notifier has it"


def test_an_erasure_outlives_a_kill_9_of_intake_the_ledger_and_nats(system: System):
    """Killed -9 just after the erasure was asked for: what intake committed is told, what the ledger
    took is carried out after its restart, and the log's copy goes once NATS is back."""
    whistle_id = system.blow(**QUIET, reporter={"name": "褚女士", "phone": phone(), "email": "chu@example.org"})
    wait_for(lambda: system.whistle(whistle_id).get("reporter"), 30, what="the whistle in the ledger")
    with system.client("supervisor") as s:
        r = s.post(f"/v1/whistles/{whistle_id}/erase-reporter", json={"reason": "asked in writing / 书面申请"})
        assert r.status_code == 200, r.text
    for service in ("intake", "ledger", "nats"):
        killed = system.pids()[service]
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda service=service, killed=killed: system.pids().get(service) not in (None, killed), 60,
                 what=f"{service} restarted")
    wait_for(lambda: (system.whistle(whistle_id).get("reporter") or {}).get("removed") == "erasure", 60,
             what="the erasure carried out by the restarted ledger")
    wait_for(lambda: asyncio.run(stored(system, "whistle.blown", whistle_id)) == [], 60,
             what="the log's copy deleted after the restarts")
    assert intake_row(system, whistle_id)["reporter_name"] is None


async def stored(system: System, event: str, whistle_id: str) -> list[bytes]:
    """The bodies of `event` for the whistle in the EVENTS stream (the last stored, if any)."""
    nc = await nats.connect(system.nats_url)
    try:
        msg = await nc.jetstream().get_msg("EVENTS", subject=stored_subject(event, whistle_id, DEFAULT_PARTITIONS))
        return [msg.data]
    except NotFoundError:
        return []
    finally:
        await nc.close()


def test_the_audit_of_a_month_lists_every_command_with_who_did_it(system: System):
    whistle_id = system.blow(**QUIET)
    # routed too (an earlier test restarted NATS: the services may still be coming back to it)
    wait_for(lambda: {"whistle.routed", "summons.issued"} <= {t["type"] for t in system.whistle(whistle_id)
                                                                .get("timeline", [])}, 30, what="the whistle routed")
    dispatcher = system.creds["dispatcher"]["id"]
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    with system.client("supervisor") as s:
        r = s.get("/v1/audit", params={"month": month})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert list(rows[0]) == ["at", "whistle_id", "type", "actor_role", "actor_id"]
        mine = [row for row in rows if row["whistle_id"] == whistle_id]
        assert [(row["type"], row["actor_role"], row["actor_id"]) for row in mine] == [
            ("whistle.blown", "dispatcher", dispatcher)]
        assert all(row["actor_role"] != "system" for row in rows)  # people's commands; services' only when asked
        with_system = list(csv.DictReader(io.StringIO(s.get("/v1/audit", params={"month": month,
                                                                                 "system": "true"}).text)))
        assert {"whistle.routed", "summons.issued"} <= {row["type"] for row in with_system
                                                        if row["whistle_id"] == whistle_id}
        # JSON a page at a time: the pages put together are the CSV
        pages, params = [], {"month": month, "limit": 50}
        while True:
            page = s.get("/v1/audit", params=params, headers={"Accept": "application/json"})
            assert page.status_code == 200 and page.headers["content-type"].startswith("application/json")
            pages += page.json()
            if "X-Next-Cursor" not in page.headers:
                break
            params["cursor"] = page.headers["X-Next-Cursor"]
        assert len(pages) >= len(rows) and {p["whistle_id"] for p in pages} >= {whistle_id}
        assert [p["at"] for p in pages] == sorted(p["at"] for p in pages)  # oldest first, across pages
        assert s.get("/v1/audit", params={"month": "2026-13"}).status_code == 422
    with system.client("dispatcher") as d:
        refused = d.get("/v1/audit", params={"month": month})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "supervisor_only"


def test_open311_shows_a_hotline_whistle_only_when_its_reporter_consented(system: System):
    consented = system.blow(**QUIET, reporter={"name": "周先生", "phone": phone(), "public_consent": True})
    silent = system.blow(**QUIET, reporter={"name": "吴女士", "phone": phone()})
    for whistle_id in (consented, silent):
        wait_for(lambda w=whistle_id: system.whistle(w).get("raised_at"), 20, what="the whistle on the ledger")
    assert system.whistle(consented)["reporter"]["public_consent"] is True
    with httpx.Client(base_url=system.base_url) as anyone:
        shown = anyone.get(f"/open311/v2/requests/{consented}.json")
        assert shown.status_code == 200 and shown.json()[0]["service_request_id"] == consented
        assert "周先生" not in shown.text
        assert anyone.get(f"/open311/v2/requests/{silent}.json").status_code == 404
        listed = anyone.get("/open311/v2/requests.json", params={"service_request_id": f"{consented},{silent}"})
        assert [r["service_request_id"] for r in listed.json()] == [consented]
