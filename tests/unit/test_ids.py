"""UUIDv7: version, variant, and time order across milliseconds."""

from __future__ import annotations

import time
from datetime import UTC

from shared.ids import utcnow, uuid7


def unix_ms(u) -> int:
    return u.int >> 80


def test_version_and_variant():
    for _ in range(100):
        u = uuid7()
        assert u.version == 7
        assert u.variant == "specified in RFC 4122"


def test_timestamp_is_the_current_millisecond():
    before = time.time_ns() // 1_000_000
    u = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= unix_ms(u) <= after


def test_ids_across_milliseconds_sort_by_time():
    ids = []
    for _ in range(5):
        ids.append(uuid7())
        start = time.time_ns() // 1_000_000
        while time.time_ns() // 1_000_000 == start:  # wait out the current millisecond
            pass
    assert ids == sorted(ids)
    assert [unix_ms(u) for u in ids] == sorted({unix_ms(u) for u in ids})
    assert [str(u) for u in ids] == sorted(str(u) for u in ids)  # text order too, as the database sees it


def test_ids_are_unique():
    assert len({uuid7() for _ in range(10_000)}) == 10_000


def test_utcnow_is_aware_utc():
    now = utcnow()
    assert now.tzinfo is UTC
