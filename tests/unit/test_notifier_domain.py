"""The notifier's pure rules: contact rules become steps with due times; quiet hours; what stops on a
report; what an attempt's answer means; what the messages say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from pydantic import ValidationError

from services.notifier import domain
from services.notifier.domain import Answer, Backoff, State, Verdict, after_attempt, held_until, plan
from services.notifier.messages import render
from shared.contacts import ContactRule, QuietHours

CAUSE = UUID("0195f0a0-0000-7000-8000-0000000000aa")
NOON_BJ = datetime(2026, 3, 6, 4, 0, tzinfo=UTC)  # 12:00 in Beijing
HOOK = "https://hooks.example.org/whistle"
SECRET = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"  # 24 bytes


def rule(*steps: dict, quiet: dict | None = None, locale: str = "zh-CN") -> ContactRule:
    return ContactRule.model_validate({"steps": list(steps), "quiet_hours": quiet, "locale": locale})


ZHANG = rule({"channel": "wecom", "address": "robot-key-zhang"},
             {"channel": "sms", "address": "13812341234", "delay_s": 300},
             {"target": "superior", "delay_s": 900})
SECRETARY = rule({"channel": "dingtalk", "address": "dingtalk-token-1", "secret": "SECabcdef123456"},
                 {"channel": "email", "address": "secretary@example.org", "delay_s": 60})


def test_a_new_summons_runs_every_step_at_its_delay_and_the_superior_by_its_own_rule():
    rows = plan("summons.issued", CAUSE, "m-zhang", NOON_BJ, "urgent", {"m-zhang": ZHANG, "m-sec": SECRETARY},
                None, superior="m-sec")
    assert [(r.recipient_id, r.step, r.channel, r.due_at - NOON_BJ) for r in rows] == [
        ("m-zhang", "1", "wecom", timedelta(0)),
        ("m-zhang", "2", "sms", timedelta(minutes=5)),
        ("m-sec", "3.1", "dingtalk", timedelta(minutes=15)),
        ("m-sec", "3.2", "email", timedelta(minutes=16)),
    ]
    assert rows[1].target == {"address": "13812341234", "secret": None, "mention": []}
    assert all(r.stops_on_report for r in rows)  # a report stops whatever of the chain is left


def test_ids_are_the_same_for_the_same_event_recipient_and_step_and_differ_otherwise():
    first = plan("summons.issued", CAUSE, "m-zhang", NOON_BJ, "urgent", {"m-zhang": ZHANG}, None, superior="m-sec")
    again = plan("summons.issued", CAUSE, "m-zhang", NOON_BJ, "urgent", {"m-zhang": ZHANG}, None, superior="m-sec")
    assert [r.id for r in first] == [r.id for r in again]
    assert len({r.id for r in first}) == len(first)
    other = plan("summons.issued", UUID(int=CAUSE.int + 1), "m-zhang", NOON_BJ, "urgent", {"m-zhang": ZHANG}, None)
    assert not {r.id for r in other} & {r.id for r in first}


def test_without_a_rule_the_community_default_applies_and_without_either_nobody_is_told():
    default = rule({"channel": "wecom", "address": "community-group", "mention": ["13900001111"]})
    rows = plan("summons.issued", CAUSE, "m-nobody", NOON_BJ, "urgent", {}, default, superior="m-sec")
    assert [(r.recipient_id, r.channel, r.target["mention"]) for r in rows] == [
        ("m-nobody", "wecom", ["13900001111"])]
    assert plan("summons.issued", CAUSE, "m-nobody", NOON_BJ, "urgent", {}, None) == []


def test_other_events_are_one_notice_on_the_first_step_and_stop_on_report_only_for_the_report_clock():
    rows = plan("sla.breached", CAUSE, "m-zhang", NOON_BJ, "urgent", {"m-zhang": ZHANG}, None, superior="m-sec",
                stops_on_report=True)
    assert [(r.step, r.channel, r.due_at, r.stops_on_report) for r in rows] == [("1", "wecom", NOON_BJ, True)]
    resolve = plan("sla.warned", CAUSE, "m-zhang", NOON_BJ, "urgent", {"m-zhang": ZHANG}, None)
    assert [r.stops_on_report for r in resolve] == [False]


@pytest.mark.parametrize(("local", "released"), [
    ("2026-03-06 23:30", "2026-03-07 07:00"),  # after the start: the next morning
    ("2026-03-07 03:00", "2026-03-07 07:00"),  # after midnight: the same morning
    ("2026-03-06 21:59", None),
    ("2026-03-07 07:00", None),  # the end is outside the window
])
def test_quiet_hours_across_midnight_hold_until_their_end_in_beijing_time(local, released):
    at = datetime.fromisoformat(local).replace(tzinfo=domain.BEIJING).astimezone(UTC)
    out = held_until(at, QuietHours(start="22:00", end="07:00"))
    expected = datetime.fromisoformat(released).replace(tzinfo=domain.BEIJING) if released else at
    assert out == expected


def test_quiet_hours_within_a_day():
    at = datetime(2026, 3, 6, 12, 30, tzinfo=domain.BEIJING)
    assert held_until(at, QuietHours(start="12:00", end="14:00")) == datetime(2026, 3, 6, 14, 0, tzinfo=domain.BEIJING)
    assert held_until(at, QuietHours(start="13:00", end="14:00")) == at


def test_quiet_hours_hold_routine_notifications_only():
    night = datetime(2026, 3, 6, 23, 0, tzinfo=domain.BEIJING)
    quiet = rule({"channel": "sms", "address": "13812341234"}, quiet={"start": "22:00", "end": "07:00"})
    routine = plan("summons.issued", CAUSE, "m-zhang", night, "routine", {"m-zhang": quiet}, None)
    assert routine[0].due_at == datetime(2026, 3, 7, 7, 0, tzinfo=domain.BEIJING)
    for tier in ("urgent", "complex"):
        assert plan("summons.issued", CAUSE, "m-zhang", night, tier, {"m-zhang": quiet}, None)[0].due_at == night


def test_the_residents_follow_up_sms_waits_out_the_communitys_quiet_hours_whatever_the_tier():
    night = datetime(2026, 3, 6, 23, 0, tzinfo=domain.BEIJING)
    default = rule({"channel": "wecom", "address": "community-group"}, quiet={"start": "21:00", "end": "08:00"})
    resident = domain.plan_resident(CAUSE, night, default)
    assert (resident.recipient_id, resident.channel, resident.stops_on_report) == ("resident", "sms", False)
    assert resident.due_at == datetime(2026, 3, 7, 8, 0, tzinfo=domain.BEIJING)
    assert domain.plan_resident(CAUSE, night, None).due_at == night


# --- attempts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "verdict"), [
    (200, Verdict.delivered), (204, Verdict.delivered), (500, Verdict.retry), (503, Verdict.retry),
    (429, Verdict.retry), (408, Verdict.retry), (400, Verdict.refused), (403, Verdict.refused),
    (404, Verdict.refused), (301, Verdict.refused),
])
def test_http_answers(status, verdict):
    assert domain.http_verdict(status) is verdict


def test_a_channel_down_or_5xx_is_retried_with_growing_waits_until_the_limit_a_4xx_never():
    backoff = Backoff(first_s=1, factor=4, max_s=60, jitter=0)
    down = Answer(Verdict.retry, 500, "boom")
    waits = [(after_attempt(down, n, 5, NOON_BJ, backoff, 0.5).next_at - NOON_BJ).total_seconds() for n in (1, 2, 3, 4)]
    assert waits == [1, 4, 16, 60]
    assert after_attempt(down, 5, 5, NOON_BJ, backoff, 0.5) == domain.Outcome(State.failed, None, True)
    assert after_attempt(Answer(Verdict.refused, 400), 1, 5, NOON_BJ, backoff, 0.5).state is State.failed
    assert after_attempt(Answer(Verdict.delivered, 200), 3, 5, NOON_BJ, backoff, 0.5) == domain.Outcome(
        State.delivered, None, True)


def test_jitter_spreads_a_burst_of_retries_within_its_bounds():
    b = Backoff(first_s=10, factor=2, max_s=100, jitter=0.2)
    assert b.delay(1, 0.0) == pytest.approx(8) and b.delay(1, 0.999999) == pytest.approx(12, rel=1e-4)


@pytest.mark.parametrize(("channel", "address", "shown"), [
    ("sms", "13812341234", "138****1234"),
    ("email", "zhang.wei@example.org", "z***@example.org"),
    ("webhook", "https://hooks.example.org/path/secret-token", "https://hooks.example.org/…"),
    ("wecom", "robot-key-zhang", "robo…"),
])
def test_addresses_are_masked_in_everything_shown(channel, address, shown):
    assert domain.mask(channel, address) == shown


# --- contact rules ----------------------------------------------------------------------------------


def field_of(body: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        ContactRule.model_validate(body)
    return ".".join(str(p) for p in caught.value.errors()[0]["loc"])


@pytest.mark.parametrize(("step", "field"), [
    ({"channel": "pigeon", "address": "x"}, "steps.0.channel"),
    ({"channel": "webhook", "address": "not a url"}, "steps.0.address"),
    ({"channel": "webhook", "address": "ftp://hooks.example.org/x"}, "steps.0.address"),
    ({"channel": "webhook", "address": HOOK, "secret": "plain"}, "steps.0.secret"),
    ({"channel": "sms", "address": "12812341234"}, "steps.0.address"),
    ({"channel": "sms", "address": "1381234123"}, "steps.0.address"),
    ({"channel": "email", "address": "zhang.example.org"}, "steps.0.address"),
    ({"channel": "wecom", "address": "robot-key-1", "mention": ["555"]}, "steps.0.mention"),
    ({"channel": "dingtalk", "address": "dingtalk-token-1"}, "steps.0.secret"),
    ({"target": "superior", "channel": "sms"}, "steps.0.channel"),
    ({"address": "13812341234"}, "steps.0.channel"),
    ({"channel": "sms", "address": "13812341234", "delay_s": -1}, "steps.0.delay_s"),
])
def test_a_bad_step_is_refused_naming_its_field(step, field):
    assert field_of({"steps": [step]}) == field


def test_rule_level_mistakes_name_their_field():
    assert field_of({"steps": []}) == "steps"
    assert field_of({"steps": [{"channel": "sms", "address": "13812341234", "delay_s": 60},
                               {"channel": "sms", "address": "13812341234"}]}) == "steps"
    assert field_of({"steps": [{"channel": "sms", "address": "13812341234"}],
                     "quiet_hours": {"start": "25:00", "end": "07:00"}}) == "quiet_hours.start"


def test_a_good_rule_is_kept_with_numbers_normalised():
    r = rule({"channel": "sms", "address": "+86 138 1234 1234"},
             {"channel": "webhook", "address": HOOK, "secret": SECRET, "delay_s": 60})
    assert r.steps[0].address == "13812341234" and r.steps[1].secret == SECRET


# --- messages -------------------------------------------------------------------------------------


def test_messages_name_category_place_tier_and_the_deadline_in_beijing_time_with_the_link():
    facts = {"category": "roof_leak", "location": {"building": "7", "unit": "2"}, "tier": "urgent",
             "responder_name": "Zhang Wei", "report_deadline": datetime(2026, 3, 6, 9, 0, tzinfo=UTC)}
    names = {"roof_leak": ("屋顶漏雨", "Roof leak")}
    link = "https://whistle.example/console/summons/abc"
    zh = render("summons.issued", facts, {}, link, "zh-CN", names)
    assert "屋顶漏雨" in zh.text and "7号楼2单元" in zh.text and "急事快办" in zh.text
    assert "2026-03-06 17:00 (北京时间)" in zh.text and link in zh.text
    en = render("summons.issued", facts, {}, link, "en", names)
    assert en.text == en.text_en and "Roof leak" in en.text and "Building 7, unit 2" in en.text
    assert "2026-03-06 17:00 (Beijing time)" in en.text and en.subject_zh == zh.subject
    assert zh.params["link"] == link and zh.params["deadline"].startswith("2026-03-06 17:00")


def test_every_kind_the_notifier_sends_has_a_template_in_both_languages():
    names = {"roof_leak": ("屋顶漏雨", "Roof leak")}
    details = {"clock": "report", "deadline": "2026-03-06T09:00:00+00:00", "level": "superior", "step": 2,
               "responder_id": "m-zhang", "to_responder_id": "d-housing", "reason": "parts",
               "new_deadline": "2026-03-08T09:00:00+00:00"}
    for kind in ("summons.issued", "summons.urged", "sla.warned", "sla.breached", "escalation.raised", "summons.returned",
                 "summons.transferred", "summons.extension_requested", "summons.extension_granted",
                 "summons.extension_refused", "whistle.verified"):
        m = render(kind, {"category": "roof_leak", "tier": "routine"}, details, "L", "zh-CN", names)
        assert "屋顶漏雨" in m.text_zh and "Roof leak" in m.text_en and "{" not in m.text_zh + m.text_en, kind
