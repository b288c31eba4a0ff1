"""The console's session cookie, CSRF tokens, safe redirects and the sign-in slow-down."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from services.gateway.console.session import Signer, csrf_ok, safe_next
from services.routing.accounts import (
    FIRST_LOCK_S,
    FREE_FAILURES,
    MAX_LOCK_S,
    Throttle,
    lock_for,
)
from shared.contracts import Actor

NOW = 1_800_000_000.0


def test_a_session_round_trips_until_it_expires():
    signer = Signer("secret", ttl_s=60)
    cookie, session = signer.issue(Actor(role="supervisor", id="xingcheng-street"), now=NOW)
    loaded = signer.load(cookie, now=NOW + 59)
    assert loaded == session and loaded.actor == Actor(role="supervisor", id="xingcheng-street")
    assert signer.load(cookie, now=NOW + 60) is None  # expired: sign in again


@pytest.mark.parametrize("tamper", [
    lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),  # signature changed
    lambda c: "x" + c,  # payload changed
    lambda c: c.split(".")[0],  # no signature
    lambda c: "",
    lambda c: "..",
    lambda c: "\udcff.\udcff",
])
def test_a_tampered_cookie_is_nobody(tamper):
    signer = Signer("secret", ttl_s=60)
    cookie, _ = signer.issue(Actor(role="dispatcher", id="community-7"), now=NOW)
    assert signer.load(tamper(cookie), now=NOW) is None


def test_a_cookie_of_another_secret_is_nobody():
    cookie, _ = Signer("one", ttl_s=60).issue(Actor(role="dispatcher", id="community-7"), now=NOW)
    assert Signer("two", ttl_s=60).load(cookie, now=NOW) is None


def test_a_bearer_token_is_not_a_session():
    from shared import auth

    secret = "secret-of-at-least-32-bytes-long"
    assert Signer(secret, ttl_s=60).load(auth.mint(auth.KeyRing.single(secret), "supervisor", "xingcheng-street")) is None


def test_each_session_has_its_own_csrf_token_and_only_it_passes():
    signer = Signer("secret", ttl_s=60)
    _, a = signer.issue(Actor(role="dispatcher", id="community-7"))
    _, b = signer.issue(Actor(role="dispatcher", id="community-7"))
    assert a.csrf != b.csrf
    assert csrf_ok(a.csrf, a.csrf)
    assert not csrf_ok(a.csrf, b.csrf)
    assert not csrf_ok(a.csrf, None) and not csrf_ok(a.csrf, "") and not csrf_ok("", "")


def test_the_presession_token_is_signed():
    signer = Signer("secret", ttl_s=60)
    cookie = signer.presession()
    token = signer.presession_token(cookie)
    assert token and cookie.startswith(token)
    assert signer.presession_token(token + ".forged") is None
    assert signer.presession_token(None) is None


@pytest.mark.parametrize("target,expected", [
    ("/console/whistles/1?x=2", "/console/whistles/1?x=2"),
    ("https://evil.example/", "/console/"), ("//evil.example/console/", "/console/"),
    ("/console/\\evil", "/console/"), (None, "/console/"), ("/v1/whistles", "/console/"),
])
def test_only_console_paths_are_returned_to(target, expected):
    assert safe_next(target) == expected


def test_wrong_passwords_lock_longer_and_longer_up_to_a_cap():
    assert [lock_for(n) for n in range(1, FREE_FAILURES + 1)] == [0.0] * FREE_FAILURES
    locks = [lock_for(FREE_FAILURES + n) for n in range(1, 6)]
    assert locks[0] == FIRST_LOCK_S and all(b == 2 * a for a, b in itertools.pairwise(locks))
    assert lock_for(1000) == MAX_LOCK_S


def test_a_throttle_counts_failures_and_forgets_after_an_hour():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    t = Throttle()
    for i in range(FREE_FAILURES):
        t = t.failed(at + timedelta(seconds=i))
        assert t.wait(at + timedelta(seconds=i)) == 0
    t = t.failed(at + timedelta(seconds=10))
    assert t.failures == FREE_FAILURES + 1 and t.wait(at + timedelta(seconds=10)) == FIRST_LOCK_S
    assert t.wait(at + timedelta(seconds=10 + FIRST_LOCK_S)) == 0
    fresh = t.failed(at + timedelta(hours=2))
    assert fresh.failures == 1 and fresh.wait(at + timedelta(hours=2)) == 0
