"""Dead letters as the ledger records them: what each names, and whether and where it can be replayed.

Two paths bring one: the runtime publishes a message it cannot handle to `deadletter.<service>`
with headers naming where it came from and why (`ServiceRuntime.dead_letter`); the server's
max-deliveries advisory names only the stream, sequence, consumer and delivery count, and the
ledger fetches the message by its sequence. Both end as one `DeadLetter`, one row per
(stream, sequence, consumer).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from uuid import UUID

from nats.aio.msg import Msg

from shared import subjects
from shared.runtime import Poison

_NS = uuid.UUID("6b1f5e0a-3c1d-4f7e-9a51-7a3f0b9c2d10")
# the runtime retries a failing message in place (one server delivery, many attempts) and says how
# often in its reason: "failed 5 times: <error>"
_ATTEMPTS = re.compile(r"^failed ([0-9]{1,9}) times: ")

# The ledger's own dead-letter consumers: an advisory about one of them is about a dead letter or an
# advisory, not a lost whistle event (and with unlimited deliveries it should never come).
RECORDERS = frozenset({"ledger-deadletters", "ledger-advisories"})

# where a replayed subject lands: domain events and clock firings only (a dead letter or an
# advisory put back would be a forged one; a timer's schedule header is not kept)
_REPLAYABLE = {**{f"{family}.": subjects.EVENTS_STREAM for family in subjects.EVENT_FAMILIES},
               f"{subjects.CLOCK_DUE}.": subjects.CLOCKS_STREAM}


@dataclass(frozen=True)
class DeadLetter:
    """One message a consumer could not handle, as recorded."""

    key: UUID  # the inbox key of the message that told of it
    source: str  # 'runtime' (with the error) or 'advisory' (deliveries used up, no error known)
    service: str
    subject: str
    reason: str
    stream: str | None
    stream_seq: int | None
    consumer: str | None
    deliveries: int | None
    body: bytes | None
    whistle_id: UUID | None = None
    event_type: str | None = None


@dataclass(frozen=True)
class MaxDeliveries:
    """The server's advisory: a consumer used up its deliveries of a message."""

    key: UUID
    stream: str
    consumer: str
    stream_seq: int
    deliveries: int


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() else None


def whistle_of(body: bytes | None) -> UUID | None:
    """The whistle a message is about: its `whistle_id`, else its `correlation_id`, when it is JSON."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError), or nested too deep
        return None
    if not isinstance(data, dict):
        return None
    for field in ("whistle_id", "correlation_id"):
        try:
            return UUID(str(data[field]))
        except (KeyError, ValueError):
            continue
    return None


def event_type_of(subject: str | None) -> str | None:
    """An event's subject is its type; a clock's message is typed by its first two tokens, not its id."""
    if not subject or subject == "?":
        return None
    return ".".join(subject.split(".")[:2])


def described(dl: DeadLetter) -> DeadLetter:
    """The dead letter with the whistle and event type its subject and body name."""
    return replace(dl, whistle_id=whistle_of(dl.body), event_type=event_type_of(dl.subject))


def attempts(reason: str, delivered: int | None) -> int | None:
    """How often the consumer tried the message: the server's deliveries, or the runtime's attempts in
    place its reason counts, whichever is more."""
    tried = _ATTEMPTS.match(reason)
    counts = [n for n in (delivered, int(tried.group(1)) if tried else None) if n is not None]
    return max(counts) if counts else None


def refuse_stray(m: Msg) -> None:
    """A message on the events stream without its whistle in the subject: no partition's consumer takes
    it, so it is dead-lettered here rather than left unread."""
    raise Poison(f"published on {m.subject!r}: an event is published on <family>.<verb>.<whistle id>")


def parse_dead_letter(m: Msg) -> DeadLetter:
    """A message the runtime dead-lettered, with the headers `ServiceRuntime.dead_letter` sets."""
    h = m.headers or {}
    seq = m.metadata.sequence.stream if m.metadata else 0
    reason = h.get("Whistle-Reason") or "unknown"
    return described(DeadLetter(
        key=uuid.uuid5(_NS, f"deadletter:{seq}"), source="runtime",
        service=h.get("Whistle-Service") or m.subject.rsplit(".", 1)[-1],
        subject=h.get("Whistle-Subject") or "?", reason=reason,
        stream=h.get("Whistle-Stream") or None, stream_seq=_int(h.get("Whistle-Stream-Seq")),
        consumer=h.get("Whistle-Consumer") or None, deliveries=attempts(reason, _int(h.get("Whistle-Deliveries"))),
        body=m.data,
    ))


def parse_advisory(m: Msg) -> MaxDeliveries:
    """The server's max-deliveries advisory (JSON)."""
    try:
        a = json.loads(m.data)
        return MaxDeliveries(
            key=uuid.uuid5(_NS, f"advisory:{a['stream']}:{a['consumer']}:{a['stream_seq']}"),
            stream=a["stream"], consumer=a["consumer"], stream_seq=int(a["stream_seq"]),
            deliveries=int(a["deliveries"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise Poison(f"bad advisory: {exc}") from exc


def from_advisory(a: MaxDeliveries, subject: str | None, body: bytes | None) -> DeadLetter:
    """The dead letter an advisory tells of, given the message fetched by its sequence (None: gone)."""
    return described(DeadLetter(
        key=a.key, source="advisory", service=a.consumer.split("-", 1)[0], subject=subject or "?",
        reason=f"failed {a.deliveries} deliveries to consumer {a.consumer}", stream=a.stream,
        stream_seq=a.stream_seq, consumer=a.consumer, deliveries=a.deliveries, body=body,
    ))


def replay_stream(subject: str, stream: str | None) -> str | None:
    """The stream a replay of this subject lands in, or None when it cannot be replayed (not a domain
    event nor a clock firing, or not in the stream it was taken from)."""
    target = next((s for prefix, s in _REPLAYABLE.items() if subject.startswith(prefix)), None)
    if target is None or (stream is not None and stream != target):
        return None
    return target


def replay_msg_id(dead_letter_id: int, n: int) -> str:
    """The n-th replay's Nats-Msg-Id: each replay is published once, however often the relay retries it."""
    return f"replay-{dead_letter_id}-{n}"
