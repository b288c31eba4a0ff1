"""Partitions by whistle: the server's `{{partition(n, …)}}` subject mapping, computed here too.

Shape. An event is published on its subject with the whistle id as one more token,
`whistle.blown.<whistle_id>`, and the EVENTS stream's subject transform stores it as
`whistle.blown.<p>.<whistle_id>`, p = `partition(n, 3)` of the id:

    src  *.*.*
    dest {{wildcard(1)}}.{{wildcard(2)}}.{{partition(n,3)}}.{{wildcard(3)}}

Why this shape:
- the publisher names only the whistle, never its partition: n can change with the stream's
  config, and a relay with a stale n cannot put a whistle in the wrong partition;
- the stored subject stays inside the stream's families (`whistle.>`, `summons.>`…), so a
  consumer of partition p filters `whistle.blown.<p>.*`, `summons.*.<p>.*`, and a filter on
  the event type alone is `whistle.blown.>`;
- the id stays in the stored subject: one whistle's events are `*.*.*.<whistle_id>`;
- a stored subject has four tokens and the source three, so putting a stored message back on
  its subject (a dead letter's replay) is not transformed again, and a two-token subject of a
  publisher not yet moved over is stored as it comes (the server leaves a subject the source
  does not match as it is).

The hash is the server's (server/subject_transform.go, `getHashPartition`): FNV-1a 32 bits of
the key, modulo n. With token indexes the key is those wildcard tokens' bytes one after another
with no separator; the shorthand `partition(n)` hashes the whole subject, tokens joined by '.'.
"""

from __future__ import annotations

from uuid import UUID

from nats.js.api import SubjectTransform

DEFAULT_PARTITIONS = 16
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv1a_32(key: bytes) -> int:
    """FNV-1a, 32 bits (Go's hash/fnv New32a)."""
    h = _FNV32_OFFSET
    for byte in key:
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def partition_of(token: str, n: int) -> int:
    """The partition nats-server's `{{partition(n, i)}}` gives a subject whose i-th wildcard is `token`.

    Several indexes hash their tokens concatenated: pass them joined with no separator. The
    shorthand `partition(n)` hashes the whole subject: pass the subject.
    """
    if n < 1:
        raise ValueError(f"partitions must be at least 1, not {n}")
    return fnv1a_32(token.encode()) % n


def published_subject(event_subject: str, whistle_id: UUID | str) -> str:
    """What a publisher writes: the event's subject, then the whistle id."""
    return f"{event_subject}.{whistle_id}"


def stored_subject(event_subject: str, whistle_id: UUID | str, n: int) -> str:
    """What the stream stores for that publication: the partition goes before the id."""
    token = str(whistle_id)
    return f"{event_subject}.{partition_of(token, n)}.{token}"


def split_stored(subject: str) -> tuple[str, int, str]:
    """(event subject, partition, whistle id) of a stored subject; ValueError for another shape."""
    tokens = subject.split(".")
    if len(tokens) != 4 or not tokens[2].isdigit():
        raise ValueError(f"not a partitioned event subject: {subject!r}")
    return f"{tokens[0]}.{tokens[1]}", int(tokens[2]), tokens[3]


def partition_filter(partition: int, event_subject: str = "*.*") -> str:
    """A consumer's filter for one partition: of every event (the default) or of one type."""
    return f"{event_subject}.{partition}.*"


def subject_transform(n: int = DEFAULT_PARTITIONS) -> SubjectTransform:
    """The EVENTS stream's `subject_transform`: `<type>.<verb>.<id>` stored as `<type>.<verb>.<p>.<id>`."""
    if n < 1:
        raise ValueError(f"partitions must be at least 1, not {n}")
    return SubjectTransform(src="*.*.*", dest="{{wildcard(1)}}.{{wildcard(2)}}.{{partition(%d,3)}}.{{wildcard(3)}}" % n)
