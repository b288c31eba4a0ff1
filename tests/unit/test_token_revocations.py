"""Revocation at the gateway: the in-memory list, the token cache in front of every request, the API
that revokes and reissues (against a fake routing), console sessions, and `whistle up`'s secret files."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from services.cli import keys
from services.cli.runner import banner
from services.gateway.api import create_app
from services.gateway.bus import Bus
from services.gateway.console.session import SESSION_COOKIE, Signer
from services.gateway.console.web import Console
from services.gateway.edge import TokenCache
from services.gateway.revocations import Revocations, RevocationWatch
from services.gateway.settings import GatewaySettings
from shared import auth, subjects
from shared.contracts import Actor, Reply
from tests.signing import SIGNERS

SECRET = "unit-secret-of-at-least-32-bytes-long"
KEYS = auth.KeyRing.parse(f"k2:{'n' * 40},k1:{SECRET}")
NOW = time.time()


def claims(token: str) -> auth.Claims:
    return auth.decode(KEYS, token)


# --- the list --------------------------------------------------------------------------------------


def test_a_revoked_jti_kills_that_token_only():
    revocations = Revocations.empty()
    one, two = auth.mint(KEYS, "dispatcher", "d1"), auth.mint(KEYS, "dispatcher", "d1")
    revocations.replace({"jtis": [claims(one).jti]}, time.monotonic())
    assert revocations.revoked(claims(one)) and not revocations.revoked(claims(two))


def test_not_before_kills_a_responders_tokens_issued_until_then_and_no_later_ones():
    revocations = Revocations.empty()
    before = auth.mint(KEYS, "responder", "r1", now=NOW - 10)
    after = auth.mint(KEYS, "responder", "r1", now=NOW + 10)
    other = auth.mint(KEYS, "responder", "r2", now=NOW - 10)
    revocations.replace({"not_before": {"r1": NOW}}, time.monotonic())
    assert revocations.revoked(claims(before))
    assert not revocations.revoked(claims(after)) and not revocations.revoked(claims(other))
    # a dispatcher who happens to share the id is another person
    assert not revocations.revoked(claims(auth.mint(KEYS, "dispatcher", "r1", now=NOW - 10)))


@pytest.mark.parametrize("gap", [0.0, 0.0001, 0.0004, 0.0006, 0.0009])
def test_a_token_minted_a_fraction_of_a_millisecond_before_the_not_before_is_revoked(gap):
    revocations = Revocations.empty()
    minted = 1_800_000_000.0006
    revocations.replace({"not_before": {"r1": minted + gap}}, time.monotonic())
    assert revocations.revoked(claims(auth.mint(KEYS, "responder", "r1", now=minted)))


def test_a_deactivated_responder_is_revoked_whatever_its_tokens_and_sessions():
    revocations = Revocations.empty()
    token = auth.mint(KEYS, "responder", "r1", now=NOW + 10)
    revocations.replace({"inactive": ["r1"]}, time.monotonic())
    assert revocations.revoked(claims(token))
    assert revocations.session_revoked(Actor(role="responder", id="r1"), NOW + 100)
    revocations.apply("active", ("r1", True))  # active again
    assert not revocations.revoked(claims(token))


def test_a_change_confirmed_here_survives_a_list_read_before_it():
    revocations = Revocations.empty()
    token = auth.mint(KEYS, "responder", "r1")
    asked = time.monotonic()
    revocations.apply("jti", claims(token).jti)
    revocations.apply("active", ("r2", False))
    revocations.replace({"jtis": [], "inactive": []}, asked)  # read before the commit, answered after
    assert revocations.revoked(claims(token)) and "r2" in revocations.inactive
    revocations.replace({"jtis": [], "inactive": []}, time.monotonic())  # read after: routing's word wins
    assert not revocations.revoked(claims(token)) and "r2" not in revocations.inactive


class FakeBus:
    """Routing's side: the list as `answers` holds it; one subscription recorded."""

    def __init__(self, answers: list[Reply]):
        self.answers = answers
        self.asked = 0
        self.reconnected: list = []
        self.nc = SimpleNamespace(subscribe=self._subscribe)
        self.subscribed: list[tuple[str, object]] = []

    async def _subscribe(self, subject, cb):
        self.subscribed.append((subject, cb))

    async def ask(self, subject, actor, payload=None):
        assert subject == subjects.QRY_ROUTING_TOKEN_REVOCATIONS and actor.role == "system"
        self.asked += 1
        return self.answers[min(self.asked, len(self.answers)) - 1]


async def test_the_watch_loads_at_start_and_again_on_each_notice():
    import asyncio

    bus = FakeBus([Reply.refuse(503, "service_unavailable", "x"), Reply.success({"jtis": ["j1"]}),
                   Reply.success({"jtis": ["j1", "j2"]})])
    revocations = Revocations()
    watch = RevocationWatch(bus, revocations, refresh_s=60)
    await watch.start()
    try:
        assert [s for s, _ in bus.subscribed] == [subjects.ROUTING_TOKENS_CHANGED]  # before the first read
        for _ in range(50):  # routing away at first: tried again within RETRY_S
            if revocations.loaded:
                break
            await asyncio.sleep(0.05)
        assert revocations.loaded and revocations.jtis == {"j1"}
        await bus.subscribed[0][1](None)  # routing's notice
        for _ in range(20):
            if "j2" in revocations.jtis:
                break
            await asyncio.sleep(0.01)
        assert revocations.jtis == {"j1", "j2"}
    finally:
        await watch.stop()


# --- the token cache ---------------------------------------------------------------------------------


def test_the_cache_checks_expiry_and_revocation_on_every_request():
    revocations = Revocations.empty()
    cache = TokenCache(KEYS, revocations)
    token = auth.mint(KEYS, "supervisor", "s1", ttl_s=60)
    assert cache.actor(token) == Actor(role="supervisor", id="s1")
    assert cache.actor(token, now=time.time() + 61) is None  # cached, yet expired now
    revocations.apply("jti", claims(token).jti)
    assert cache.actor(token) is None


def test_the_cache_is_not_ready_until_the_list_is_loaded():
    assert not TokenCache(KEYS, Revocations()).ready
    assert TokenCache(KEYS, Revocations.empty()).ready and TokenCache(KEYS).ready


# --- the API, against a fake routing ---------------------------------------------------------------------


class FakeNats:
    max_payload = 1024 * 1024

    def __init__(self, answers: dict[str, Reply]):
        self.answers = answers
        self.sent: list[tuple[str, dict]] = []

    async def request(self, subject: str, body: bytes, timeout: float) -> SimpleNamespace:  # noqa: ARG002
        self.sent.append((subject, json.loads(body)))
        reply = self.answers.get(subject, Reply.success({"items": []}))
        return SimpleNamespace(data=reply.model_dump_json().encode())


def gateway(answers: dict[str, Reply] | None = None, revocations: Revocations | None = None):
    bus = Bus("nats://unused", 5.0, SIGNERS["gateway"])
    bus.nc = FakeNats(answers or {})
    settings = GatewaySettings(auth_secret=SecretStr(SECRET), signing_keys=SecretStr(f"k2:{'n' * 40},k1:{SECRET}"))
    app = create_app(settings, bus=bus, revocations=revocations or Revocations.empty())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw"), bus.nc


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_revoked_token_is_refused_from_the_next_request_on_and_routing_never_sees_the_token():
    token = auth.mint(KEYS, "dispatcher", "community-7")
    supervisor = auth.mint(KEYS, "supervisor", "xingcheng-street")
    http, nats = gateway({subjects.CMD_ROUTING_TOKEN_REVOKE: Reply.success({"jti": claims(token).jti})})
    async with http:
        assert (await http.get("/v1/whistles", headers=bearer(token))).status_code == 200
        r = await http.post("/v1/tokens/revoke", json={"token": token}, headers=bearer(supervisor))
        assert r.status_code == 200, r.text
        assert (await http.get("/v1/whistles", headers=bearer(token))).status_code == 401
        assert (await http.get("/v1/whistles", headers=bearer(supervisor))).status_code == 200
    [(subject, body)] = [(s, b) for s, b in nats.sent if s == subjects.CMD_ROUTING_TOKEN_REVOKE]
    assert body["payload"]["jti"] == claims(token).jti and body["payload"]["subject_id"] == "community-7"
    assert token not in json.dumps(body) and body["actor"] == {"role": "supervisor", "id": "xingcheng-street"}


async def test_revoking_what_is_no_token_of_ours_is_422_and_asks_nobody():
    stranger = auth.mint(auth.KeyRing.parse(f"k9:{'s' * 40}"), "dispatcher", "x")
    http, nats = gateway()
    async with http:
        r = await http.post("/v1/tokens/revoke", json={"token": stranger},
                            headers=bearer(auth.mint(KEYS, "supervisor", "s")))
    assert r.status_code == 422 and r.json()["error"]["field"] == "token"
    assert not [s for s, _ in nats.sent if s == subjects.CMD_ROUTING_TOKEN_REVOKE]


async def test_revoking_a_responders_tokens_refuses_the_old_ones_at_once_and_a_reissued_one_works():
    old = auth.mint(KEYS, "responder", "d-water")
    supervisor = auth.mint(KEYS, "supervisor", "xingcheng-street")
    not_before = time.time()
    from datetime import UTC, datetime
    http, nats = gateway({
        subjects.CMD_ROUTING_RESPONDER_TOKENS_REVOKE: Reply.success(
            {"responder_id": "d-water", "not_before": datetime.fromtimestamp(not_before, UTC).isoformat()}),
        subjects.QRY_ROUTING_RESPONDER_ONE: Reply.success({"id": "d-water", "active": True}),
    })
    async with http:
        r = await http.post("/v1/responders/d-water/revoke-tokens", headers=bearer(supervisor))
        assert r.status_code == 200, r.text
        assert (await http.get("/v1/summons", headers=bearer(old))).status_code == 401
        issued = await http.post("/v1/responders/d-water/tokens", headers=bearer(supervisor))
        assert issued.status_code == 201, issued.text
        fresh = issued.json()["token"]
        assert issued.json()["kid"] == "k2" and claims(fresh).iat > not_before
        assert (await http.get("/v1/summons", headers=bearer(fresh))).status_code == 200
        # only a supervisor reissues
        assert (await http.post("/v1/responders/d-water/tokens", headers=bearer(fresh))).status_code == 403


async def test_a_deactivated_responder_is_refused_from_the_next_request_on_this_gateway():
    token = auth.mint(KEYS, "responder", "d-water")
    supervisor = auth.mint(KEYS, "supervisor", "xingcheng-street")
    http, _ = gateway({subjects.CMD_ROUTING_RESPONDER_PUT: Reply.success({"responder": {}, "created": False})})
    body = {"kind": "department", "name_en": "Water", "name_zh": "水务", "active": False}
    async with http:
        assert (await http.get("/v1/summons", headers=bearer(token))).status_code == 200
        assert (await http.put("/v1/responders/d-water", json=body, headers=bearer(supervisor))).status_code == 200
        assert (await http.get("/v1/summons", headers=bearer(token))).status_code == 401


async def test_a_token_of_the_previous_key_works_and_an_expired_one_is_401():
    previous = auth.mint(auth.KeyRing.parse(f"k1:{SECRET}"), "dispatcher", "d1")
    expired = auth.mint(KEYS, "dispatcher", "d1", ttl_s=1, now=time.time() - 5)
    http, _ = gateway()
    async with http:
        assert (await http.get("/v1/whistles", headers=bearer(previous))).status_code == 200
        r = await http.get("/v1/whistles", headers=bearer(expired))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


async def test_until_the_list_is_loaded_bearer_calls_get_503_and_healthz_is_not_ready():
    http, nats = gateway(revocations=Revocations())
    nats.answers.update({f"{subjects.HEALTH}.{name}": Reply.success({}) for name in subjects.SERVICES})

    async def ready(subject, body, timeout):  # noqa: ARG001
        return SimpleNamespace(data=b'{"ready": true}')

    nats.request = ready
    async with http:
        r = await http.get("/v1/whistles", headers=bearer(auth.mint(KEYS, "dispatcher", "d1")))
        health = await http.get("/healthz")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert health.status_code == 503 and "gateway" in health.json()["problems"]


# --- settings: no default secret ------------------------------------------------------------------------


def test_the_gateway_has_no_default_secret(monkeypatch):
    for name in ("WHISTLE_AUTH_SECRET", "WHISTLE_SIGNING_KEYS", "GATEWAY_SIGNING_KEYS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="WHISTLE_AUTH_SECRET is not set"):
        GatewaySettings()
    monkeypatch.setenv("WHISTLE_AUTH_SECRET", "too-short")
    with pytest.raises(ValidationError, match="too short") as refused:
        GatewaySettings()
    assert "too-short" not in str(refused.value)  # the value never appears in the message
    monkeypatch.setenv("WHISTLE_AUTH_SECRET", SECRET)
    monkeypatch.setenv("WHISTLE_SIGNING_KEYS", "k1:weak")
    with pytest.raises(ValidationError, match="too short") as refused:
        GatewaySettings()
    assert "weak" not in str(refused.value)
    monkeypatch.delenv("WHISTLE_SIGNING_KEYS")
    assert GatewaySettings().key_ring().kids == ("main",)


@pytest.mark.parametrize("module", ["services.response.settings:ResponseSettings",
                                    "services.notifier.settings:NotifierSettings"])
def test_the_link_signing_services_have_no_default_secret(monkeypatch, module):
    import importlib

    path, name = module.split(":")
    cls = getattr(importlib.import_module(path), name)
    monkeypatch.delenv("WHISTLE_AUTH_SECRET", raising=False)
    with pytest.raises(ValidationError, match="WHISTLE_AUTH_SECRET is not set"):
        cls()
    monkeypatch.setenv("WHISTLE_AUTH_SECRET", "x" * 31)
    with pytest.raises(ValidationError, match="too short"):
        cls()
    monkeypatch.setenv("WHISTLE_AUTH_SECRET", SECRET)
    assert cls().link_secret.get_secret_value() == SECRET


# --- console sessions -------------------------------------------------------------------------------------


def test_a_console_session_of_a_deactivated_or_revoked_responder_is_no_session():
    revocations = Revocations.empty()
    console = Console(bus=None, secret=SECRET, session_ttl_s=3600, secure_cookies=False, revocations=revocations)
    cookie, _ = console.signer.issue(Actor(role="responder", id="r1"), now=NOW - 60)
    supervisor, _ = console.signer.issue(Actor(role="supervisor", id="s1"), now=NOW - 60)

    def session(value: str):
        request = SimpleNamespace(cookies={SESSION_COOKIE: value})
        return console.context(request).session

    assert session(cookie) is not None
    revocations.apply("not_before", ("r1", NOW - 30))
    assert session(cookie) is None and session(supervisor) is not None
    later, _ = console.signer.issue(Actor(role="responder", id="r1"), now=NOW)
    assert session(later) is not None  # signed in again after the revocation
    revocations.apply("active", ("r1", False))
    assert session(later) is None
    assert Signer(SECRET, 3600).load(later) is not None  # the cookie itself is fine: the list decides


# --- whistle up's secret files ------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_whistle_up_makes_its_secrets_once_private_from_the_first_byte(tmp_path: Path, monkeypatch):
    opened: list[tuple[str, int]] = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        opened.append((str(path), mode if flags & os.O_CREAT else -1))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    old = os.umask(0)  # even with nothing masked, nobody else can read them
    try:
        secret = keys.auth_secret(tmp_path, None)
        ring = keys.signing_keys(tmp_path, None)
    finally:
        os.umask(old)
    assert len(secret.encode()) >= 32 and keys.auth_secret(tmp_path, None) == secret  # made once
    assert keys.signing_keys(tmp_path, None) == ring and auth.KeyRing.parse(ring).kid.startswith("k")
    for name in ("secret", "signing_keys"):
        assert mode(tmp_path / name) == 0o600
    assert opened and all(m == 0o600 for p, m in opened if m != -1)


def test_credentials_are_written_private_and_whole(tmp_path: Path):
    path = tmp_path / "credentials.json"
    old = os.umask(0)
    try:
        keys.write_private(path, '{"a": 1}')
        keys.write_private(path, '{"a": 2}')
    finally:
        os.umask(old)
    assert mode(path) == 0o600 and json.loads(path.read_text()) == {"a": 2}
    assert not path.with_name("credentials.json.part").exists()


def test_a_given_secret_must_be_long_enough(tmp_path: Path):
    with pytest.raises(auth.SecretError, match="too short"):
        keys.auth_secret(tmp_path, "short")
    with pytest.raises(auth.SecretError):
        keys.signing_keys(tmp_path, "k1:short")
    assert not (tmp_path / "secret").exists()


def test_rotation_puts_a_new_key_first_and_keeps_only_the_one_before(tmp_path: Path):
    first = keys.signing_keys(tmp_path, None)
    token = auth.mint(auth.KeyRing.parse(first), "dispatcher", "d1")
    kid2, kept = keys.rotate(tmp_path)
    ring = auth.KeyRing.parse(keys.signing_keys(tmp_path, None))
    assert ring.kid == kid2 and kept == list(ring.kids) and len(kept) == 2
    assert auth.verify(ring, token) is not None  # nobody logged out
    keys.rotate(tmp_path)
    ring = auth.KeyRing.parse(keys.signing_keys(tmp_path, None))
    assert len(ring.kids) == 2 and auth.verify(ring, token) is None and mode(tmp_path / "signing_keys") == 0o600


def test_the_banner_shows_no_token_nor_password_unless_demo(tmp_path: Path):
    token = auth.mint(KEYS, "dispatcher", "community-7")
    creds = {"base_url": "http://x", "dispatcher": {"id": "community-7", "token": token},
             "supervisor": {"id": "s", "token": token + "s"},
             "responders": [{"id": f"r{i}", "token": f"{token}{i}"} for i in range(5)],
             "console": {"url": "http://x/console/", **{role: {"username": role, "password": f"pw-{role}"}
                                                        for role in ("dispatcher", "supervisor", "responders")}}}
    quiet = banner(creds, tmp_path / "credentials.json", demo=False)
    assert token not in quiet and "pw-" not in quiet and str(tmp_path / "credentials.json") in quiet
    assert token in banner(creds, tmp_path / "credentials.json", demo=True)


def test_a_url_is_logged_without_its_password():
    assert keys.redacted("postgresql://whistle:s3cret-pw@db:5432/whistle") == "postgresql://whistle:***@db:5432/whistle"
    assert keys.redacted("postgresql://postgres@127.0.0.1:5432/postgres") == "postgresql://postgres@127.0.0.1:5432/postgres"
