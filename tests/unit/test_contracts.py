"""Message contracts: every event survives a round trip through its subject."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from pydantic import ValidationError

from shared.contracts import EVENT_TYPES, Actor, Command, Reply, UnknownSubject, parse_event

NOW = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
WHISTLE_ID = UUID("0195f0a0-0000-7000-8000-000000000001")
SUMMONS_ID = UUID("0195f0a0-0000-7000-8000-000000000002")
CAUSE_ID = UUID("0195f0a0-0000-7000-8000-000000000003")
COMMON = {"occurred_at": NOW, "whistle_id": WHISTLE_ID, "causation_id": CAUSE_ID, "actor": "system:test"}
SUMMONS = {"summons_id": SUMMONS_ID, "responder_id": "m-zhang-wei"}
LATER = NOW + timedelta(hours=2)

# the fields each event needs beyond the common ones, by subject
SAMPLES: dict[str, dict] = {
    "whistle.blown": {
        "category": "fence_broken", "description": "fence cut", "tier": "urgent", "source": "grid_patrol",
        "location": {"building": "7", "grid": "g-2", "address": "west gate", "service_point": "连心桥服务站"},
    },
    "whistle.routed": {"rule": "fence-to-urban-management", "lead_responder_id": "s-urban"},
    "whistle.unroutable": {"reason": "no routing rule for category 'x'"},
    "summons.issued": {
        **SUMMONS, "responder_kind": "member", "responder_name": "Zhang Wei", "superior_id": "m-branch1-secretary",
        "role": "co", "category": "clothes_drying", "tier": "complex",
    },
    "summons.reported": {**SUMMONS, "note": "报到"},
    "summons.on_site": SUMMONS,
    "summons.resolved": {**SUMMONS, "note": "fixed"},
    "whistle.verified": {"note": "checked", "photo_url": "https://example.org/p.jpg"},
    "whistle.closed": {},
    "sla.breached": {**SUMMONS, "clock": "report", "deadline": LATER},
    "escalation.raised": {
        "summons_id": SUMMONS_ID, "step": 2, "level": "superior", "target_id": "m-branch1-secretary",
        "reason": "report deadline passed unanswered",
    },
    # events being added to the contracts alongside these tests
    "summons.paused": {**SUMMONS, "reason": "extension_pending"},
    "summons.resumed": SUMMONS,
    "summons.extension_requested": {**SUMMONS, "clock": "resolve", "new_deadline": LATER, "reason": "parts"},
    "summons.extension_granted": {**SUMMONS, "clock": "resolve", "new_deadline": LATER},
    "summons.extension_refused": {**SUMMONS, "clock": "on_site"},
    "whistle.followed_up": {"solved": True, "satisfaction": "basically_satisfied", "note": "ok"},
    "sla.started": {**SUMMONS, "basis": "working", "deadlines": {"report": LATER, "resolve": LATER}},
    "sla.rescheduled": {"summons_id": SUMMONS_ID, "clock": "report", "deadline": None, "reason": "paused"},
    "sla.warned": {**SUMMONS, "clock": "report", "deadline": LATER},
    "summons.returned": {**SUMMONS, "role": "lead", "reason_code": "wrong_area", "reason": "not our grid"},
    "summons.transferred": {**SUMMONS, "role": "co", "to_responder_id": "d-enforcement", "reason": "night noise"},
    "whistle.reopened": {"lead_responder_id": "d-housing", "reason": "not solved / 未解决"},
    "whistle.arbitration_needed": {"returned_by": ["s-urban", "d-enforcement"]},
    "whistle.arbitrated": {"responder_id": "s-urban", "note": "审定"},
    "whistle.reporter_erased": {"reason": "the reporter asked / 本人申请"},
    "whistle.grouped": {"class_id": SUMMONS_ID, "size": 3, "first_seen": NOW - timedelta(days=2), "last_seen": NOW},
    "notification.sent": {
        "notification_id": CAUSE_ID, "summons_id": SUMMONS_ID, "kind": "summons.issued", "recipient_id": "m-zhang-wei",
        "step": "1", "channel": "wecom", "address": "robo…", "attempt": 1, "status": 200, "answer": '{"errcode":0}',
    },
    "notification.failed": {
        "notification_id": CAUSE_ID, "kind": "whistle.verified", "recipient_id": "resident", "step": "1",
        "channel": "sms", "address": "138****5678", "attempt": 2, "status": 503, "answer": "busy", "final": False,
        "retry_at": LATER,
    },
}
SUBJECTS = sorted(EVENT_TYPES)


def build(subject: str):
    assert subject in SAMPLES, f"no sample for {subject}: add one to SAMPLES"
    return EVENT_TYPES[subject](**COMMON, **SAMPLES[subject])


def test_subjects_are_unique_and_match_their_class():
    for subject, cls in EVENT_TYPES.items():
        assert cls.SUBJECT == subject
    assert len({cls for cls in EVENT_TYPES.values()}) == len(EVENT_TYPES)


@pytest.mark.parametrize("subject", SUBJECTS)
def test_round_trip(subject):
    event = build(subject)
    assert event.subject == subject
    parsed = parse_event(subject, event.model_dump_json())
    assert type(parsed) is type(event)
    assert parsed == event
    assert parse_event(subject, event.model_dump_json().encode()) == event


@pytest.mark.parametrize("subject", SUBJECTS)
def test_every_event_carries_the_envelope(subject):
    event = build(subject)
    assert event.event_id.version == 7
    assert event.schema_version == 1
    assert event.correlation_id == WHISTLE_ID
    assert event.causation_id == CAUSE_ID


@pytest.mark.parametrize("subject", SUBJECTS)
def test_body_missing_a_field_is_invalid(subject):
    body = build(subject).model_dump(mode="json")
    del body["whistle_id"]
    with pytest.raises(ValidationError):
        parse_event(subject, json.dumps(body))


@pytest.mark.parametrize("subject", SUBJECTS)
def test_body_with_an_extra_field_is_invalid(subject):
    body = {**build(subject).model_dump(mode="json"), "surprise": 1}
    with pytest.raises(ValidationError):
        parse_event(subject, json.dumps(body))


@pytest.mark.parametrize(("subject", "field"), [
    ("whistle.blown", "category"), ("summons.issued", "summons_id"), ("sla.breached", "deadline"),
    ("escalation.raised", "level"), ("whistle.routed", "lead_responder_id"),
])
def test_body_missing_its_own_field_is_invalid(subject, field):
    body = build(subject).model_dump(mode="json")
    del body[field]
    with pytest.raises(ValidationError) as exc:
        parse_event(subject, json.dumps(body))
    assert (field,) in {tuple(e["loc"]) for e in exc.value.errors()}


@pytest.mark.parametrize("subject", ["whistle.exploded", "", "whistle", "WHISTLE.BLOWN"])
def test_unknown_subject(subject):
    with pytest.raises(UnknownSubject):
        parse_event(subject, b"{}")


def test_unknown_subject_is_a_value_error():
    assert issubclass(UnknownSubject, ValueError)


def test_malformed_json_is_invalid():
    with pytest.raises(ValidationError):
        parse_event("whistle.closed", b"{not json")


def test_correlation_defaults_to_the_whistle():
    event = EVENT_TYPES["whistle.closed"](occurred_at=NOW, whistle_id=WHISTLE_ID, actor="dispatcher:d")
    assert event.correlation_id == WHISTLE_ID


def test_matching_correlation_is_accepted():
    event = EVENT_TYPES["whistle.closed"](**COMMON, correlation_id=WHISTLE_ID)
    assert event.correlation_id == WHISTLE_ID


def test_mismatching_correlation_is_rejected():
    with pytest.raises(ValidationError, match="correlation_id"):
        EVENT_TYPES["whistle.closed"](**COMMON, correlation_id=SUMMONS_ID)


def test_naive_time_is_rejected():
    with pytest.raises(ValidationError):
        EVENT_TYPES["whistle.closed"](occurred_at=datetime(2026, 3, 6, 9, 0), whistle_id=WHISTLE_ID, actor="x:y")


def test_events_are_frozen():
    event = build("whistle.closed")
    with pytest.raises(ValidationError):
        event.actor = "someone:else"


def test_events_get_distinct_ids():
    assert build("whistle.closed").event_id != build("whistle.closed").event_id


def test_escalation_step_is_one_based():
    with pytest.raises(ValidationError):
        EVENT_TYPES["escalation.raised"](**COMMON, **{**SAMPLES["escalation.raised"], "step": 0})


def test_actor_prints_as_role_and_id():
    assert str(Actor(role="responder", id="m-li-na")) == "responder:m-li-na"


def test_reply_refuse_carries_the_refusal():
    reply = Reply.refuse(422, "unknown_category", "no such category", field="category")
    assert reply.ok is False
    assert (reply.refusal.status, reply.refusal.code, reply.refusal.field) == (422, "unknown_category", "category")
    assert Reply.success({"id": 1}) == Reply(ok=True, data={"id": 1})


def test_command_rejects_extra_fields():
    with pytest.raises(ValidationError):
        Command.model_validate({"actor": {"role": "dispatcher", "id": "d"}, "sudo": True})


def test_a_location_point_comes_whole_and_on_the_earth():
    import math

    from shared.contracts import Location

    point = Location(building="7", lat=39.7352, long=116.1432)
    assert (point.lat, point.long) == (39.7352, 116.1432)
    for bad in ({"lat": 39.7}, {"long": 116.1}, {"lat": 91, "long": 0}, {"lat": 0, "long": -181},
                {"lat": math.nan, "long": 0}, {"lat": 0, "long": math.inf}):
        with pytest.raises(ValidationError):
            Location(building="7", **bad)
