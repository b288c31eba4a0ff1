"""Bearer tokens against the real system: expiry, revocation one by one and by responder, a deactivated
responder refused within a second on every gateway, key rotation, no default secret, private files
and no secret or token in any log."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared import auth
from tests.e2e.conftest import ROOT, System, free_port, wait_for

WITHIN_S = 1.0  # a deactivated responder's token, or one revoked, is refused this soon on every gateway
DEPARTMENT = {"kind": "department", "name_en": "Token test office", "name_zh": "令牌测试办公室"}


def keys_of(system: System) -> auth.KeyRing:
    """Every key the gateways accept, the first signing."""
    return auth.KeyRing.parse(system.signing_keys)


def previous_key(system: System) -> auth.KeyRing:
    """The key being rotated out (the second of WHISTLE_SIGNING_KEYS), alone."""
    return auth.KeyRing.parse(system.signing_keys.split(",")[1])


def status(base_url: str, token: str, path: str = "/v1/summons") -> int:
    return httpx.get(f"{base_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code


def refused_within(base_url: str, token: str, seconds: float = WITHIN_S) -> float:
    """How long until `token` gets 401 at `base_url`, polled; fails past `seconds`."""
    started = time.monotonic()
    while True:
        code = status(base_url, token)
        elapsed = time.monotonic() - started
        if code == 401:
            return elapsed
        assert code == 200, code
        assert elapsed <= seconds, f"still {code} after {elapsed:.2f} s"
        time.sleep(0.02)


def new_responder(system: System, name: str, **changes) -> tuple[str, str]:
    """A department of the test's own (no skills: nobody routes to it); its token from the PUT."""
    responder_id = f"d-tok-{name}-{secrets.token_hex(3)}"
    with system.client("supervisor") as sup:
        r = sup.put(f"/v1/responders/{responder_id}", json={**DEPARTMENT, **changes})
    assert r.status_code == 201, r.text
    return r.json()["token"], responder_id


def test_an_expired_token_is_401(system: System) -> None:
    keys = keys_of(system)
    expired = auth.mint(keys, "dispatcher", "community-7", ttl_s=60, now=time.time() - 61)
    fresh = auth.mint(keys, "dispatcher", "community-7", ttl_s=60)
    r = httpx.get(f"{system.base_url}/v1/whistles", headers={"Authorization": f"Bearer {expired}"}, timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert status(system.base_url, fresh, "/v1/whistles") == 200


def test_the_credentials_tokens_expire_and_name_their_key(system: System) -> None:
    claims = auth.verify(keys_of(system), system.token("dispatcher"))
    assert claims is not None and claims.kid == keys_of(system).kid
    assert time.time() + 3600 < claims.exp <= time.time() + 31 * 24 * 3600


def test_a_revoked_token_is_401_from_the_next_request_on_everywhere(system: System, other_gateway: str) -> None:
    keys = keys_of(system)
    token = auth.mint(keys, "dispatcher", "community-7")  # a second token of the dispatcher's
    assert status(system.base_url, token, "/v1/whistles") == 200
    assert status(other_gateway, token, "/v1/whistles") == 200
    with system.client("supervisor") as sup:
        r = sup.post("/v1/tokens/revoke", json={"token": token})
    assert r.status_code == 200, r.text
    assert status(system.base_url, token, "/v1/whistles") == 401  # the very next request
    refused_within(other_gateway, token)
    # the dispatcher's other tokens go on working
    assert status(system.base_url, system.token("dispatcher"), "/v1/whistles") == 200
    assert status(other_gateway, system.token("dispatcher"), "/v1/whistles") == 200


def test_a_holder_revokes_its_own_token_and_no_one_elses(system: System) -> None:
    keys = keys_of(system)
    mine, theirs = auth.mint(keys, "responder", "d-property"), auth.mint(keys, "responder", "d-housing")
    with httpx.Client(base_url=system.base_url, headers={"Authorization": f"Bearer {mine}"}, timeout=10) as me:
        refused = me.post("/v1/tokens/revoke", json={"token": theirs})
        assert refused.status_code == 403, refused.text
        assert me.post("/v1/tokens/revoke", json={"token": mine}).status_code == 200  # signing out
        assert me.get("/v1/summons").status_code == 401
    assert status(system.base_url, theirs) == 200
    assert status(system.base_url, system.token("d-property")) == 200  # its other token is untouched
    stranger = auth.mint(auth.KeyRing.parse(f"k-x:{secrets.token_urlsafe(32)}"), "dispatcher", "community-7")
    with system.client("supervisor") as sup:
        r = sup.post("/v1/tokens/revoke", json={"token": stranger})
    assert r.status_code == 422 and r.json()["error"]["field"] == "token"


def test_revoking_all_of_a_responders_tokens(system: System, other_gateway: str) -> None:
    token, responder_id = new_responder(system, "all")
    second = auth.mint(keys_of(system), "responder", responder_id)
    assert status(system.base_url, token) == status(system.base_url, second) == 200
    assert status(other_gateway, token) == 200
    with system.client("supervisor") as sup:
        r = sup.post(f"/v1/responders/{responder_id}/revoke-tokens")
        assert r.status_code == 200, r.text
        assert status(system.base_url, token) == status(system.base_url, second) == 401
        refused_within(other_gateway, second)
        # a fresh one works: issued after the "not before"
        issued = sup.post(f"/v1/responders/{responder_id}/tokens")
        assert issued.status_code == 201, issued.text
        fresh = issued.json()["token"]
        assert status(system.base_url, fresh) == 200
        assert wait_for(lambda: status(other_gateway, fresh) == 200, timeout=WITHIN_S, interval=0.02)
        assert sup.post("/v1/responders/d-no-such-unit/revoke-tokens").status_code == 404
    with system.client("dispatcher") as d:
        assert d.post(f"/v1/responders/{responder_id}/revoke-tokens").status_code == 403
        assert d.post(f"/v1/responders/{responder_id}/tokens").status_code == 403


def test_a_deactivated_responder_is_401_within_a_second_on_every_gateway(system: System, other_gateway: str) -> None:
    token, responder_id = new_responder(system, "off")
    assert status(system.base_url, token) == 200 and status(other_gateway, token) == 200
    with system.client("supervisor") as sup:
        r = sup.put(f"/v1/responders/{responder_id}", json={**DEPARTMENT, "active": False})
        assert r.status_code == 200, r.text
        # measured from the answer: the gateway that answered knows at once, the other by routing's notice
        assert status(system.base_url, token) == 401
        refused_within(other_gateway, token)
        assert sup.post(f"/v1/responders/{responder_id}/tokens").status_code == 409
        # deactivated through the other gateway: this one is told within the second
        token2, responder2 = new_responder(system, "off2")
        with httpx.Client(base_url=other_gateway, headers={"Authorization": f"Bearer {system.token('supervisor')}"},
                          timeout=10) as sup2:
            assert sup2.put(f"/v1/responders/{responder2}", json={**DEPARTMENT, "active": False}).status_code == 200
        refused_within(system.base_url, token2)
        # active again: its tokens work again, on every gateway within the second
        assert sup.put(f"/v1/responders/{responder_id}", json=DEPARTMENT).status_code == 200
        for base in (system.base_url, other_gateway):
            assert wait_for(lambda base=base: status(base, token) == 200, timeout=WITHIN_S, interval=0.02)


def test_a_token_of_the_previous_key_works_during_a_rotation_and_an_unknown_kid_is_401(system: System) -> None:
    old = auth.mint(previous_key(system), "dispatcher", "community-7")
    assert old.split(".")[1] == "k-old" and status(system.base_url, old, "/v1/whistles") == 200
    for stranger in (auth.KeyRing.parse(f"k-unknown:{secrets.token_urlsafe(32)}"),  # a kid nobody listed
                     auth.KeyRing.parse(f"k-old:{secrets.token_urlsafe(32)}")):  # a listed kid, another secret
        forged = auth.mint(stranger, "supervisor", "xingcheng-street")
        r = httpx.get(f"{system.base_url}/v1/whistles", headers={"Authorization": f"Bearer {forged}"}, timeout=5)
        assert r.status_code == 401, r.text


@pytest.mark.parametrize(("secret", "keys", "says"), [
    (None, None, "WHISTLE_AUTH_SECRET is not set"),
    ("", None, "WHISTLE_AUTH_SECRET is not set"),
    ("x" * 31, None, "WHISTLE_AUTH_SECRET is too short"),
    ("x" * 40, "k1:too-short-a-key", "too short"),
    ("x" * 40, "no-kid-here", "not kid:secret"),
])
def test_the_gateway_refuses_to_start_without_a_good_secret(secret, keys, says) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WHISTLE_AUTH_SECRET", "WHISTLE_SIGNING_KEYS", "GATEWAY_SIGNING_KEYS")}
    env.update(GATEWAY_PORT=str(free_port()), NATS_URL="nats://127.0.0.1:1")  # never reached: it must not start
    if secret is not None:
        env["WHISTLE_AUTH_SECRET"] = secret
    if keys is not None:
        env["WHISTLE_SIGNING_KEYS"] = keys
    done = subprocess.run([sys.executable, "-m", "services.gateway"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert says in done.stderr and "refuses to start" in done.stderr
    assert "Traceback" not in done.stderr  # a clear message, not a stack
    if keys is not None and keys.partition(":")[2]:
        assert keys.partition(":")[2] not in done.stderr  # the refused secret is never repeated


def test_credentials_json_is_readable_by_its_owner_only(system: System) -> None:
    path = system.home / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.with_name("credentials.json.part").exists()


def test_no_secret_nor_token_appears_in_any_log(system: System) -> None:
    secrets_ = [part.partition(":")[2] for part in system.signing_keys.split(",")]
    secrets_ += list(json.loads((system.home / "command-keys.json").read_text()).values())  # signed commands' keys
    tokens = [system.token("dispatcher"), system.token("supervisor"), system.token("d-housing")]
    logs = sorted((system.home / "logs").glob("*.log"))
    assert logs, "no service logs"
    for path in logs:
        text = path.read_text(errors="replace")
        for value in secrets_ + tokens:
            assert value not in text, f"{path.name} holds a secret or a token"
    # the runner's own output shows the demo's tokens by design (a demo run), never a secret
    runner = (system.home / "runner.log").read_text(errors="replace")
    for value in secrets_:
        assert value not in runner
    assert not any(Path(system.home / name).exists() and stat.S_IMODE(Path(system.home / name).stat().st_mode) & 0o077
                   for name in ("secret", "signing_keys", "credentials.json", "nats-users.json", "command-keys.json"))
