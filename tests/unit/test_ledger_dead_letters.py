"""What a dead-letter record names, from the runtime's headers or the server's advisory; what can be replayed."""

from __future__ import annotations

import json
from types import SimpleNamespace
from uuid import UUID

import pytest

from services.ledger.dead_letters import (
    RECORDERS,
    event_type_of,
    from_advisory,
    parse_advisory,
    parse_dead_letter,
    replay_msg_id,
    replay_stream,
    whistle_of,
)
from shared.runtime import Poison

WHISTLE = UUID("0195f3a4-0000-7000-8000-000000000001")
BODY = json.dumps({"event_id": "0195f3a4-0000-7000-8000-0000000000ff", "whistle_id": str(WHISTLE),
                   "correlation_id": str(WHISTLE), "category": "roof_leak"}).encode()


def _msg(subject: str, data: bytes, headers: dict | None, seq: int = 41) -> SimpleNamespace:
    return SimpleNamespace(subject=subject, data=data, headers=headers,
                           metadata=SimpleNamespace(sequence=SimpleNamespace(stream=seq)))


def test_a_runtime_dead_letter_names_stream_seq_subject_whistle_type_consumer_attempts_and_error() -> None:
    dl = parse_dead_letter(_msg("deadletter.intake", BODY, {
        "Whistle-Reason": "failed 5 times: ForeignKeyViolationError: insert violates foreign key",
        "Whistle-Subject": "whistle.blown", "Whistle-Service": "intake", "Whistle-Stream": "EVENTS",
        "Whistle-Stream-Seq": "1234", "Whistle-Consumer": "intake-classes", "Whistle-Deliveries": "1",
    }))
    assert (dl.stream, dl.stream_seq, dl.subject, dl.consumer, dl.service) == (
        "EVENTS", 1234, "whistle.blown", "intake-classes", "intake")
    assert dl.whistle_id == WHISTLE and dl.event_type == "whistle.blown" and dl.source == "runtime"
    # one server delivery, five attempts in place: the record says how often it was tried
    assert dl.deliveries == 5
    assert dl.reason.startswith("failed 5 times: ForeignKeyViolationError") and dl.body == BODY


def test_a_malformed_message_keeps_the_servers_delivery_count_and_has_no_whistle() -> None:
    dl = parse_dead_letter(_msg("deadletter.routing", b"\xff not json", {
        "Whistle-Reason": "malformed: 3 validation errors", "Whistle-Subject": "whistle.blown",
        "Whistle-Service": "routing", "Whistle-Stream": "EVENTS", "Whistle-Stream-Seq": "9",
        "Whistle-Consumer": "routing-whistle-blown", "Whistle-Deliveries": "2",
    }))
    assert dl.deliveries == 2 and dl.whistle_id is None and dl.event_type == "whistle.blown"


def test_a_dead_letter_without_headers_is_kept_with_what_is_known() -> None:
    dl = parse_dead_letter(_msg("deadletter.escalation", b"{}", None))
    assert (dl.service, dl.subject, dl.reason, dl.stream, dl.stream_seq, dl.consumer, dl.deliveries) == (
        "escalation", "?", "unknown", None, None, None, None)
    assert dl.event_type is None
    # non-ASCII digits are digits to isdigit(), not to int(): not a sequence
    assert parse_dead_letter(_msg("deadletter.x", b"{}", {"Whistle-Stream-Seq": "²"})).stream_seq is None


def test_the_whistle_is_the_whistle_id_else_the_correlation_id() -> None:
    assert whistle_of(json.dumps({"correlation_id": str(WHISTLE)}).encode()) == WHISTLE
    assert whistle_of(json.dumps({"whistle_id": "nope", "correlation_id": str(WHISTLE)}).encode()) == WHISTLE
    for body in (None, b"", b"[1, 2]", b"\xff", b"{}", b"[" * 100_000):
        assert whistle_of(body) is None


def test_an_event_is_typed_by_its_subject_and_a_clock_message_not_by_its_id() -> None:
    assert event_type_of("summons.issued") == "summons.issued"
    assert event_type_of("clock.due.0195f3a4-0000-7000-8000-000000000001") == "clock.due"
    assert event_type_of("?") is None and event_type_of(None) is None


def test_an_advisory_names_the_message_fetched_by_its_sequence_with_a_reason_when_none_is_better() -> None:
    advisory = parse_advisory(_msg("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.EVENTS.routing-whistle-blown",
                                   json.dumps({"stream": "EVENTS", "consumer": "routing-whistle-blown",
                                               "stream_seq": 77, "deliveries": 50}).encode(), None))
    dl = from_advisory(advisory, "whistle.blown", BODY)
    assert (dl.stream, dl.stream_seq, dl.consumer, dl.service, dl.deliveries, dl.source) == (
        "EVENTS", 77, "routing-whistle-blown", "routing", 50, "advisory")
    assert dl.reason == "failed 50 deliveries to consumer routing-whistle-blown"
    assert dl.whistle_id == WHISTLE and dl.event_type == "whistle.blown"
    gone = from_advisory(advisory, None, None)  # no longer in the stream: still recorded
    assert gone.subject == "?" and gone.body is None and gone.whistle_id is None


def test_a_bad_advisory_is_poison() -> None:
    with pytest.raises(Poison):
        parse_advisory(_msg("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.X.Y", b'{"stream": "X"}', None))


def test_the_ledgers_own_recorders_are_known() -> None:
    assert RECORDERS == {"ledger-deadletters", "ledger-advisories"}


def test_only_domain_events_and_clock_firings_are_replayed_and_into_the_stream_they_came_from() -> None:
    assert replay_stream("whistle.blown", "EVENTS") == "EVENTS"
    assert replay_stream("escalation.raised", None) == "EVENTS"  # a row recorded before streams were kept
    assert replay_stream("clock.due.0195f3a4-0000-7000-8000-000000000001", "CLOCKS") == "CLOCKS"
    for subject, stream in [("deadletter.ledger", "DEADLETTER"), ("?", None), ("clock.timer.x", "CLOCKS"),
                            ("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.EVENTS.x", "ADVISORIES"),
                            ("whistle.blown", "CLOCKS")]:
        assert replay_stream(subject, stream) is None, subject
    assert replay_msg_id(12, 3) == "replay-12-3"
