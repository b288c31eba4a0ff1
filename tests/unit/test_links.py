"""One-tap report links: they name one responder and one summons, expire, and refuse any alteration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from services.notifier.acks import ack_link
from services.notifier.messages import render
from services.response.domain import link_refusal
from shared import auth, links

SECRET = "s3cret"
NOW = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)


def test_a_link_names_its_responder_summons_expiry_and_a_fresh_nonce():
    summons = uuid4()
    token = links.mint(SECRET, "d-housing", summons, NOW + timedelta(hours=1))
    claim = links.verify(SECRET, token, NOW)
    assert (claim.responder_id, claim.summons_id) == ("d-housing", str(summons))
    assert claim.expires_at == NOW + timedelta(hours=1)
    assert claim.nonce != links.verify(SECRET, links.mint(SECRET, "d-housing", summons, NOW + timedelta(hours=1)),
                                       NOW).nonce


def test_an_expired_link_is_told_apart_from_a_forged_one():
    token = links.mint(SECRET, "d-housing", uuid4(), NOW + timedelta(minutes=5))
    with pytest.raises(links.LinkExpired):
        links.verify(SECRET, token, NOW + timedelta(minutes=5))
    with pytest.raises(links.LinkInvalid):
        links.verify("another-secret", token, NOW)


@pytest.mark.parametrize("change", ["payload", "signature", "version"])
def test_any_change_to_a_link_is_refused(change):
    version, payload, sig = links.mint(SECRET, "d-housing", uuid4(), NOW + timedelta(hours=1)).split(".")
    other = links.mint(SECRET, "d-water", uuid4(), NOW + timedelta(hours=1)).split(".")
    token = {"payload": f"{version}.{other[1]}.{sig}", "signature": f"{version}.{payload}.{sig[:-2]}AA",
             "version": f"wh1.{payload}.{sig}"}[change]
    with pytest.raises(links.LinkInvalid):
        links.verify(SECRET, token, NOW)


def test_a_bearer_token_is_no_link_and_garbage_is_refused():
    with pytest.raises(links.LinkInvalid):
        links.verify(SECRET, auth.mint(auth.KeyRing.single(SECRET * 8), "responder", "d-housing"), NOW)
    for junk in ("", "ak1", "ak1..", "ak1.!!.??", "a.b.c.d"):
        with pytest.raises(links.LinkInvalid):
            links.verify(SECRET, junk, NOW)


def _row(**over):
    row = {"kind": "summons.issued", "summons_id": uuid4(), "recipient_id": "d-housing", "step": "1",
           "report_deadline": NOW + timedelta(hours=2)}
    return row | over


def test_the_summoned_responders_own_notice_gets_a_link_until_the_report_deadline():
    row = _row()
    link = ack_link("http://x/", SECRET, row, 3600, NOW)
    claim = links.verify(SECRET, link.removeprefix("http://x/a/"), NOW)
    assert (claim.responder_id, claim.summons_id, claim.expires_at) == (
        "d-housing", str(row["summons_id"]), NOW + timedelta(hours=2))
    unknown = ack_link("http://x", SECRET, _row(report_deadline=None), 3600, NOW)
    assert links.verify(SECRET, unknown.removeprefix("http://x/a/"), NOW).expires_at == NOW + timedelta(hours=1)


def test_no_link_for_a_superior_step_nor_other_kinds():
    assert ack_link("http://x", SECRET, _row(step="3.1", recipient_id="d-boss"), 3600, NOW) is None
    assert ack_link("http://x", SECRET, _row(kind="sla.breached"), 3600, NOW) is None
    assert ack_link("http://x", SECRET, _row(summons_id=None), 3600, NOW) is None


def test_the_summons_message_carries_the_one_tap_link_in_both_languages():
    facts = {"category": "roof_leak", "location": {"building": "7"}, "tier": "urgent", "responder_name": "住建委"}
    with_link = render("summons.issued", facts, {"ack_link": "http://x/a/T"}, "http://x/console/summons/1", "zh-CN", {})
    assert "一键报到：http://x/a/T" in with_link.text_zh and "Report with one tap: http://x/a/T" in with_link.text_en
    plain = render("summons.issued", facts, {}, "http://x/console/summons/1", "zh-CN", {})
    assert "一键报到" not in plain.text and plain.text.endswith("http://x/console/summons/1")


def test_a_follow_up_link_dies_once_answered_expired_or_reopened():
    made = NOW - timedelta(days=1)
    week = 7 * 24 * 3600
    assert link_refusal(made, None, True, True, NOW, week) is None
    assert link_refusal(made, NOW, True, True, NOW, week).code == "already_answered"
    assert link_refusal(made, None, True, True, made + timedelta(days=7), week).status == 410
    assert link_refusal(made, None, False, True, NOW, week).code == "link_dead"  # reopened
    assert link_refusal(made, None, True, False, NOW, week).code == "link_dead"  # reopened, verified again
