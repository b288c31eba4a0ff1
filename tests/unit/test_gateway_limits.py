"""The edge's token buckets: bursts allowed, the average rate enforced, Retry-After honest."""

from __future__ import annotations

from services.gateway.limits import TokenBuckets, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_caller_waits_for_the_rate():
    clock = Clock()
    buckets = TokenBuckets(rate=10, burst=5, clock=clock)
    assert [buckets.take("a") for _ in range(5)] == [0.0] * 5
    wait = buckets.take("a")
    assert 0.09 < wait <= 0.1 and retry_after(wait) == "1"
    clock.now += 0.1
    assert buckets.take("a") == 0.0  # one token came back
    assert buckets.take("a") > 0


def test_callers_have_their_own_buckets():
    buckets = TokenBuckets(rate=1, burst=1, clock=Clock())
    assert buckets.take("dispatcher:a") == 0.0
    assert buckets.take("dispatcher:a") > 0
    assert buckets.take("responder:b") == 0.0


def test_idle_callers_are_forgotten_when_there_are_too_many():
    clock = Clock()
    buckets = TokenBuckets(rate=100, burst=1, clock=clock, max_keys=10)
    for i in range(10):
        buckets.take(f"k{i}")
    clock.now += 60
    buckets.take("k-new")
    buckets.take("k-new")  # refused: the sweep runs and drops the idle ones
    assert len(buckets._buckets) <= 2


def test_retry_after_is_whole_seconds_and_at_least_one():
    assert retry_after(0.01) == "1" and retry_after(1.2) == "2" and retry_after(3.0) == "3"


def test_a_caller_can_have_its_own_limit():
    buckets = TokenBuckets(rate=100, burst=100, clock=Clock(), overrides={"api:slow": (1, 2)})
    assert [buckets.take("api:slow") for _ in range(3)][2] == 1.0
    assert all(buckets.take("api:fast") == 0.0 for _ in range(50))
