"""What the real gateway takes in: a chunked body over the cap is refused without being held in memory, what
cannot fit in one NATS message is 413 (never a 5xx), an extension reaches at most 90 days, a control character
is refused naming its field, and ids are one form (NFKC) however they are typed, in paths and in bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import System

OPEN311 = "/open311/v2"
QUIET = {"category": "ebike_charging", "location": {"building": "5"}}  # its clocks run an hour (policies.json)
MB = 2**20


def rss_kib(pid: int) -> int:
    """The process's resident set (VmRSS), KiB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1])


def full_width(text: str) -> str:
    """ASCII as the full-width forms a Chinese keyboard types (ｍ-００１): NFKC makes them ASCII again."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_a_chunked_20_mb_body_is_413_and_the_gateway_holds_none_of_it(system: System) -> None:
    pid = system.pids()["gateway"]
    sent = 0

    def twenty_mb():
        nonlocal sent
        for _ in range(320):
            sent += 65536
            yield b"[" * 65536

    auth = {"Authorization": f"Bearer {system.token('dispatcher')}"}
    targets = [("/v1/whistles", {**auth, "Content-Type": "application/json"}),
               ("/v1/imports", {**auth, "Content-Type": "application/json"}),  # its own cap, 900 KiB
               (f"{OPEN311}/requests.json", {"Content-Type": "application/x-www-form-urlencoded"})]
    with httpx.Client(base_url=system.base_url, timeout=30) as c:
        c.get(f"{OPEN311}/services.json")  # warm: whatever a first request allocates is allocated
        before = rss_kib(pid)
        answers, sent_each = [], []
        for path, headers in targets:
            sent = 0
            answers.append(c.post(path, content=twenty_mb(), headers=headers))
            sent_each.append(sent)
        after = rss_kib(pid)
        answering = c.get(f"{OPEN311}/discovery.json")
    print(f"gateway VmRSS {before} KiB -> {after} KiB (+{after - before} KiB) over three 20 MB chunked bodies;"
          f" bytes the client got to send: {sent_each}")
    assert [a.status_code for a in answers] == [413, 413, 413], [a.text for a in answers]
    assert all(a.json()["error"]["code"] == "too_large" and "/" in a.json()["error"]["reason"] for a in answers)
    assert all(s < 20 * MB for s in sent_each)  # refused before the client could send it all
    assert after - before < 10 * 1024, (before, after)
    assert answering.status_code == 200  # and it goes on answering


def test_a_command_too_large_for_one_nats_message_is_413_with_a_bilingual_reason(system: System) -> None:
    """/v1/imports takes up to 900 KiB; 1e5 is 100000.0 once parsed, so 850 KB of them is 2 MB on the bus."""
    rows = [{"order_id": f"big-{i}", "n": [1e5] * 200} for i in range(1000)]
    body = json.dumps({"rows": rows, "dry_run": True}, separators=(",", ":")).replace("100000.0", "1e5").encode()
    assert 800_000 < len(body) < 900 * 1024
    with system.client("dispatcher") as d:
        r = d.post("/v1/imports", content=body, headers={"Content-Type": "application/json"})
        fits = d.post("/v1/imports", json={"rows": rows[:10], "dry_run": True})
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "too_large" and "too large" in error["reason"] and "请求过大" in error["reason"]
    assert fits.status_code in (200, 422) and fits.status_code < 500, fits.text  # rows are checked, not refused


def test_an_answer_too_large_for_one_nats_message_is_413_not_a_timeout(system: System) -> None:
    """Intake's refusal names every bad row with its value: 1,000 rows of 240 zero-width spaces (720 bytes
    each, under the 900 KiB cap) make a refusal of about 1.8 MB, more than one NATS message holds."""
    rows = [{"order_id": f"wide-{i}", "received_at": "2026-11-01T09:00:00+08:00", "category_text": "\u200b" * 240,
             "address": "7号楼", "description": "x", "caller_phone": "13800000000", "deadline_class": "routine"}
            for i in range(1000)]
    body = json.dumps({"rows": rows, "dry_run": True}, ensure_ascii=False).encode()
    assert len(body) < 900 * 1024
    with system.client("dispatcher") as d:
        r = d.post("/v1/imports", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    assert r.json()["error"]["code"] == "too_large" and "结果过大" in r.json()["error"]["reason"]


@pytest.fixture(scope="module")
def summons(system: System) -> dict:
    """A summons on a quiet whistle (its clocks run an hour), and its responder."""
    whistle = system.wait_summons(system.blow(**QUIET, description="延期与全角编号 / extensions and full-width ids"))
    return {**whistle["summons"][0], "whistle_id": whistle["id"]}


def test_an_extension_more_than_90_days_out_is_422_naming_new_deadline(system: System, summons: dict) -> None:
    far = (datetime.now(UTC) + timedelta(days=91)).isoformat()
    with system.client(summons["responder_id"]) as c:
        r = c.post(f"/v1/summons/{summons['id']}/extension",
                   json={"clock": "resolve", "new_deadline": far, "reason": "等配件"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "new_deadline" and "90 days" in error["reason"] and "90 天" in error["reason"]


def test_a_control_character_in_a_whistle_is_422_naming_the_field_and_nothing_is_raised(system: System) -> None:
    with system.client("dispatcher") as d:
        description = d.post("/v1/whistles", json={**QUIET, "description": "漏\x1b雨"})
        address = d.post("/v1/whistles", json={**QUIET, "description": "x",
                                               "location": {"building": "5", "address": "5号楼\x07"}})
        name = d.post("/v1/whistles", json={**QUIET, "description": "x", "reporter": {"name": "刘\x00阿姨"}})
        fine = d.post("/v1/whistles", json={**QUIET, "description": "第一行\n\t第二行"})
    assert [r.status_code for r in (description, address, name)] == [422] * 3
    assert [r.json()["error"]["field"] for r in (description, address, name)] == \
        ["description", "location.address", "reporter.name"]
    assert "控制字符" in description.json()["error"]["reason"]
    assert fine.status_code == 201, fine.text


def test_ids_typed_full_width_are_the_same_ids_in_paths_and_bodies(system: System, summons: dict) -> None:
    with system.client("dispatcher") as d:
        whistle = d.get(f"/v1/whistles/{full_width(summons['whistle_id'])}")
    with system.client(summons["responder_id"]) as c:
        reported = c.post(f"/v1/summons/{full_width(summons['id'])}/report")
        again = c.post(f"/v1/summons/{summons['id']}/report")
    assert reported.status_code == 200 and reported.json()["state"] == "reported", reported.text
    assert again.status_code == 409  # the same summons: already reported
    assert whistle.status_code == 200 and whistle.json()["id"] == summons["whistle_id"], whistle.text
    # a body's id and a path's, at once: a responder put with a full-width id and superior
    with system.client("supervisor") as s:
        put = s.put(f"/v1/responders/{full_width('fz-nfkc-member')}",
                    json={"kind": "member", "name_en": "NFKC", "name_zh": "全角", "superior_id": full_width("c-secretary"),
                          "building": "5", "active": False})
        got = s.get("/v1/responders/fz-nfkc-member")
    assert put.status_code in (200, 201), put.text
    assert got.status_code == 200 and got.json()["superior_id"] == "c-secretary", got.text


def test_a_full_width_path_is_checked_as_the_path_it_becomes(system: System) -> None:
    """／ｖ１／ is /v1/ to the router, so it is /v1/ to the token check too: no way round it."""
    with httpx.Client(base_url=system.base_url, timeout=15) as anonymous:
        r = anonymous.get(f"/{full_width('v1')}/whistles")
    assert r.status_code == 401, r.text
