"""Partitions by whistle: the server's own examples, stable values for fixed ids, an even spread."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from uuid import UUID

import pytest

from shared.ids import uuid7
from shared.partitions import (
    DEFAULT_PARTITIONS,
    fnv1a_32,
    partition_filter,
    partition_of,
    published_subject,
    split_stored,
    stored_subject,
    subject_transform,
)


def test_the_hash_is_fnv1a_32():
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


@pytest.mark.parametrize(("key", "n", "expected"), [
    # nats-server's server/subject_transform_test.go, TestSubjectTransforms: `shouldMatch(...)`
    ("foo", 10, 3), ("baz", 10, 0), ("qux", 10, 9),
    ("foo.bar", 10, 6), ("foo.baz", 10, 4), ("test.subject", 5, 0),
])
def test_the_servers_own_examples(key, n, expected):
    assert partition_of(key, n) == expected


@pytest.mark.parametrize(("whistle_id", "expected"), [
    ("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", 1),
    ("01936b7e-2f4a-7c3d-9e8f-0a1b2c3d4e5f", 14),
    ("00000000-0000-7000-8000-000000000000", 14),
])
def test_an_ids_partition_is_stable(whistle_id, expected):
    assert partition_of(whistle_id, DEFAULT_PARTITIONS) == expected
    assert partition_of(str(UUID(whistle_id)), DEFAULT_PARTITIONS) == expected  # the canonical text is hashed


def test_100_000_ids_spread_within_ten_percent_over_16_partitions():
    counts = Counter(partition_of(str(uuid7()), 16) for _ in range(100_000))
    mean = 100_000 / 16
    assert sorted(counts) == list(range(16))
    assert all(abs(c - mean) <= 0.1 * mean for c in counts.values()), counts


def test_a_partition_count_below_one_is_refused():
    with pytest.raises(ValueError):
        partition_of("x", 0)
    with pytest.raises(ValueError):
        subject_transform(0)


def test_published_and_stored_subjects_name_the_whistle_and_its_partition():
    whistle_id = UUID("01936b7e-2f4a-7c3d-9e8f-0a1b2c3d4e5f")
    assert published_subject("whistle.blown", whistle_id) == f"whistle.blown.{whistle_id}"
    stored = stored_subject("whistle.blown", whistle_id, 16)
    assert stored == f"whistle.blown.14.{whistle_id}"
    assert split_stored(stored) == ("whistle.blown", 14, str(whistle_id))
    with pytest.raises(ValueError):
        split_stored(f"whistle.blown.{whistle_id}")  # published, not yet stored


def test_the_transform_maps_the_third_token_and_filters_match_what_it_stores():
    tr = subject_transform(16)
    assert (tr.src, tr.dest) == ("*.*.*", "{{wildcard(1)}}.{{wildcard(2)}}.{{partition(16,3)}}.{{wildcard(3)}}")
    assert partition_filter(3) == "*.*.3.*"
    assert partition_filter(3, "summons.issued") == "summons.issued.3.*"


def test_a_lost_delivery_is_a_gap_in_the_consumer_sequence():
    """shared/partitioned.py: a partition's durable has one puller, so its deliveries come one by one; a
    missing one (lost with a NATS node) makes the puller go back to the acknowledgement floor."""
    from shared.partitioned import in_sequence

    assert in_sequence(None, [7, 8, 9]) == 9  # the first after a start or a reset: anything
    assert in_sequence(9, [10, 11]) == 11
    assert in_sequence(9, [10, 12]) is None  # 11 never came
    assert in_sequence(9, [9]) is None  # nor does a sequence come twice
    assert in_sequence(9, []) == 9


def _delivered(seq: int) -> SimpleNamespace:
    """A JetStream message as far as AckFrontier reads it."""
    return SimpleNamespace(metadata=SimpleNamespace(sequence=SimpleNamespace(stream=seq)))


def test_one_acknowledgement_covers_a_batch_and_never_one_before_a_message_still_in_hand():
    """shared/partitioned.py: under AckPolicy.ALL an acknowledgement covers every message before it, so the
    one acknowledged is the last settled below every message still in hand."""
    from shared.partitioned import AckFrontier

    acks = AckFrontier()
    m = {seq: _delivered(seq) for seq in range(1, 11)}
    for seq in range(1, 7):
        acks.taken(seq, m[seq])
    assert acks.settle([m[1], m[2], m[3]]) is m[3]  # the batch's last
    # 4 is blocked behind a failure: 5 and 6 are handled, and wait for it
    assert acks.settle([m[6], m[5]]) is None
    for seq in range(7, 11):
        acks.taken(seq, m[seq])
    assert acks.settle([m[7], m[8]]) is None
    assert acks.settle([m[4]]) is m[8]  # 4 settled: everything up to 8 at once; 9 and 10 still in hand
    assert acks.settle([m[10]]) is None
    assert acks.settle([m[9]]) is m[10]
    assert acks.settle([m[9], m[10]]) is None  # settled already: nothing new to acknowledge


def test_what_a_consumer_made_before_delivered_is_not_acknowledged_on_the_one_made_after():
    from shared.partitioned import AckFrontier

    acks = AckFrontier()
    old = _delivered(5)
    acks.taken(5, old)
    acks.reset()
    again = _delivered(5)  # the new consumer delivers it again, from its floor
    acks.taken(5, again)
    assert acks.settle([old]) is None  # the old batch finishing late acknowledges nothing on the new consumer
    assert acks.settle([again]) is again
