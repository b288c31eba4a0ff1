"""The runner's restart schedule for a crashed service or embedded server."""

from __future__ import annotations

from services.cli.runner import Backoff


def crash_and_restart(backoff: Backoff, now: float) -> float:
    """Crash at `now`, restart when due; the wait it took."""
    backoff.crashed(now)
    wait = backoff.due - now
    backoff.started(backoff.due)
    return wait


def test_a_crash_loop_waits_1_s_then_doubles_up_to_30_s() -> None:
    backoff, now, waits = Backoff(), 100.0, []
    for _ in range(7):
        backoff.up(now)
        waits.append(crash_and_restart(backoff, now))
        now = backoff.up_since + 5
    assert waits == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.restarts == 7


def test_a_failed_start_doubles_the_wait_and_a_minute_up_starts_over_at_1_s() -> None:
    backoff = Backoff()
    backoff.crashed(100.0)
    backoff.failed(101.0)  # e.g. a new postmaster refused while the old one's shared memory is in use
    assert backoff.due == 103.0
    backoff.started(103.0)
    backoff.up(150.0)
    assert crash_and_restart(backoff, 150.0) == 4
    backoff.up(154.0 + 61)
    assert crash_and_restart(backoff, 215.0) == 1


def test_a_server_back_without_the_runner_is_up_and_no_restart_is_due() -> None:
    backoff = Backoff()
    backoff.crashed(100.0)
    backoff.up(100.5)  # a postmaster started by hand, adopted
    assert backoff.due == 0.0 and backoff.restarts == 0
