"""The pure rules of partition leases: fair shares, stable preferences, rebalancing."""

from __future__ import annotations

from shared.leases import fair_share, preference, rebalance


def test_fair_share_rounds_up_so_every_partition_has_a_taker():
    assert fair_share(16, 1) == 16
    assert fair_share(16, 2) == 8
    assert fair_share(16, 3) == 6
    assert fair_share(16, 0) == 16  # nobody seen yet (ourselves included): take it all


def test_preference_is_stable_and_differs_between_replicas():
    a, b = preference("notifier-a", 16), preference("notifier-b", 16)
    assert sorted(a) == list(range(16))
    assert a == preference("notifier-a", 16)
    assert a != b


def test_rebalance_gives_back_the_least_wanted_beyond_the_share():
    ranked = preference("r1", 16)
    give, take = rebalance(range(16), [], 8, ranked)
    assert take == []
    assert sorted(give) == sorted(ranked[8:])


def test_rebalance_takes_the_most_wanted_free_partitions_up_to_the_share():
    ranked = preference("r2", 16)
    give, take = rebalance([ranked[0]], [p for p in range(16) if p != ranked[0]], 4, ranked)
    assert give == []
    assert take == ranked[1:4]


def test_two_replicas_split_sixteen_partitions_evenly():
    held = {"a": set(), "b": set()}
    free = set(range(16))
    for _ in range(3):  # rounds, alternating
        for name in ("a", "b"):
            give, take = rebalance(held[name], free, fair_share(16, 2), preference(name, 16))
            held[name] -= set(give)
            free |= set(give)
            held[name] |= set(take)
            free -= set(take)
    assert len(held["a"]) == len(held["b"]) == 8
    assert not held["a"] & held["b"]
