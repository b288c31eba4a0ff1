"""Bearer tokens: a signed role and id with a jti, an expiry and the kid of the key that signed them;
a key ring of two during a rotation; no default secret. Anything else is None, never an exception."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.auth import (
    MIN_SECRET_BYTES,
    ROLES,
    KeyRing,
    SecretError,
    check_secret,
    decode,
    mint,
    verify,
)
from shared.contracts import Actor

SECRET = "unit-test-secret-that-is-long-enough"
OLD_SECRET = "the-previous-secret-still-being-accepted"
KEYS = KeyRing.parse(f"k2:{SECRET}")
NOW = 1_800_000_000.0


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(payload: bytes, secret: str = SECRET, kid: str = "k2") -> str:
    """A correctly signed token around any payload, to reach the checks after the signature."""
    body = b64(payload)
    key = hmac.new(secret.encode(), b"whistle-bearer-token-v2", hashlib.sha256).digest()
    return f"wh2.{kid}.{body}.{b64(hmac.new(key, f'wh2.{kid}.{body}'.encode(), hashlib.sha256).digest())}"


@pytest.mark.parametrize("role", ROLES)
def test_round_trip_for_each_role(role):
    token = mint(KEYS, role, "m-zhang-wei", now=NOW)
    assert token.startswith("wh2.k2.")
    claims = verify(KEYS, token, now=NOW + 1)
    assert claims is not None and claims.actor == Actor(role=role, id="m-zhang-wei")
    assert (claims.role, claims.sub, claims.kid) == (role, "m-zhang-wei", "k2")


@pytest.mark.parametrize("subject", ["张伟", "dept:housing:head", "a.b.c", "x" * 200])
def test_round_trip_keeps_any_subject(subject):
    assert verify(KEYS, mint(KEYS, "responder", subject)).actor == Actor(role="responder", id=subject)


def test_a_token_carries_its_own_id_when_it_was_issued_and_when_it_expires():
    token = mint(KEYS, "dispatcher", "grid-leader", ttl_s=3600, now=NOW)
    claims = decode(KEYS, token)
    assert claims.iat == NOW and claims.exp == NOW + 3600 and len(claims.jti) >= 16
    other = decode(KEYS, mint(KEYS, "dispatcher", "grid-leader", ttl_s=3600, now=NOW))
    assert other.jti != claims.jti  # two tokens of the same person are told apart (revoked one by one)


def test_an_expired_token_is_refused_from_its_expiry_on():
    token = mint(KEYS, "supervisor", "street", ttl_s=60, now=NOW)
    assert verify(KEYS, token, now=NOW + 59.9) is not None
    assert verify(KEYS, token, now=NOW + 60) is None
    assert verify(KEYS, token, now=NOW + 3600) is None
    assert decode(KEYS, token).expired(NOW + 60)  # decode still reads it: it can be revoked after expiry


@pytest.mark.parametrize("ttl", [0, float("inf"), float("nan")])
def test_every_token_expires(ttl):
    with pytest.raises(ValueError, match="expire"):
        mint(KEYS, "dispatcher", "x", ttl_s=ttl)


def test_during_a_rotation_both_keys_are_accepted_and_the_new_one_signs():
    before = KeyRing.parse(f"k1:{OLD_SECRET}")
    rotating = KeyRing.parse(f"k2:{SECRET},k1:{OLD_SECRET}")
    old_token = mint(before, "responder", "d-housing")
    new_token = mint(rotating, "responder", "d-housing")
    assert rotating.kid == "k2" and rotating.kids == ("k2", "k1")
    assert new_token.startswith("wh2.k2.")
    assert verify(rotating, old_token).kid == "k1"  # nobody is logged out by the rotation
    assert verify(rotating, new_token).kid == "k2"
    after = KeyRing.parse(f"k3:{'n' * 40},k2:{SECRET}")  # the next rotation drops k1
    assert verify(after, old_token) is None and verify(after, new_token) is not None


def test_an_unknown_kid_is_refused_even_if_well_signed():
    stranger = KeyRing.parse(f"k9:{'s' * 40}")
    assert verify(KEYS, mint(stranger, "supervisor", "street")) is None
    assert verify(KEYS, signed(json.dumps(["supervisor", "street", "j1", NOW, NOW + 60]).encode(), kid="k9")) is None


def test_a_kid_relabelled_to_a_known_one_is_refused():
    two = KeyRing.parse(f"k2:{SECRET},k1:{OLD_SECRET}")
    token = mint(KeyRing.parse(f"k1:{OLD_SECRET}"), "supervisor", "street")
    version, _, payload, sig = token.split(".")
    assert verify(two, f"{version}.k2.{payload}.{sig}") is None


def test_wrong_secret_under_the_same_kid_is_refused():
    assert verify(KEYS, mint(KeyRing.parse(f"k2:{'o' * 40}"), "supervisor", "street")) is None


def test_tampered_signature_is_refused():
    token = mint(KEYS, "responder", "m-li-na")
    head, last = token[:-1], token[-1]
    assert verify(KEYS, head + ("A" if last != "A" else "B")) is None


def test_swapped_payload_is_refused():
    # a responder's signature cannot carry a dispatcher's payload
    responder = mint(KEYS, "responder", "m-li-na").split(".")
    dispatcher = mint(KEYS, "dispatcher", "m-li-na").split(".")
    assert verify(KEYS, ".".join([*dispatcher[:3], responder[3]])) is None


def test_the_old_unexpiring_tokens_are_refused():
    payload = b64(b"supervisor:xingcheng-street")
    old = f"wh1.{payload}.{b64(hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).digest())}"
    assert verify(KEYS, old) is None


def test_wrong_version_is_refused():
    token = mint(KEYS, "dispatcher", "grid-leader")
    assert verify(KEYS, "wh1" + token[3:]) is None


@pytest.mark.parametrize("garbage", [
    "", ".", "...", "....", "wh2", "wh2.", "wh2...", "wh2.k2..", "not-a-token", "Bearer wh2.k2.a.b",
    "wh2.k2.a.b.c", "wh2.k2.%%%.%%%", "wh2.k2.\u00e9.abc", "wh2.\u00e9.a.b", "wh2.k2.a.\udcff",
])
def test_garbage_is_refused(garbage):
    assert verify(KEYS, garbage) is None


def test_extra_segment_is_refused():
    assert verify(KEYS, mint(KEYS, "dispatcher", "grid-leader") + ".x") is None


@pytest.mark.parametrize("claims", [
    ["system", "escalation", "j", NOW, NOW + 60], ["root", "x", "j", NOW, NOW + 60],
    ["dispatcher", "", "j", NOW, NOW + 60], ["dispatcher", "x", "", NOW, NOW + 60],
    ["dispatcher", "x", "j", NOW, None], ["dispatcher", "x", "j", NOW, "soon"], ["dispatcher", "x", "j", NOW, True],
    ["dispatcher", "x", "j", "then", NOW + 60], ["dispatcher", "x", "j", NOW], {"role": "dispatcher"},
    "dispatcher:x", None,
])
def test_signed_but_unusable_claims_are_refused(claims):
    assert decode(KEYS, signed(json.dumps(claims).encode())) is None


@pytest.mark.parametrize("payload", [b"\xff\xfe", b"[1,2", b""])
def test_signed_but_unreadable_payload_is_refused(payload):
    assert decode(KEYS, signed(payload)) is None


def test_non_ascii_signature_is_refused_not_raised():
    # hmac.compare_digest(str, str) raises TypeError on non-ASCII text: the header "Bearer wh2.k2.x.é"
    # must be a 401, not a 500
    assert verify(KEYS, "wh2.k2.cmVzcG9uZGVyOng.\u00e9") is None


@pytest.mark.parametrize("role", ["system", "admin", "", "Dispatcher"])
def test_mint_refuses_unknown_role(role):
    with pytest.raises(ValueError, match="unknown role"):
        mint(KEYS, role, "x")


# --- secrets and key rings -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   "])
def test_no_secret_is_refused_with_its_name(value):
    with pytest.raises(SecretError, match="WHISTLE_AUTH_SECRET is not set"):
        check_secret(value, "WHISTLE_AUTH_SECRET")


def test_a_short_secret_is_refused_and_the_message_never_repeats_it():
    short = "x" * (MIN_SECRET_BYTES - 1)
    with pytest.raises(SecretError, match="too short") as refused:
        check_secret(short, "WHISTLE_AUTH_SECRET")
    assert short not in str(refused.value)
    assert check_secret("x" * MIN_SECRET_BYTES, "S") == "x" * MIN_SECRET_BYTES
    # bytes, not characters: 11 Chinese characters are 33 bytes
    assert check_secret("密" * 11, "S") == "密" * 11


@pytest.mark.parametrize("spec", [
    "", " , ", "k1", f"k1{SECRET}", f":{SECRET}", f"k 1:{SECRET}", f"{'k' * 33}:{SECRET}", "k1:tiny",
    f"k1:{SECRET},k2:tiny", f"k1:{SECRET},k1:{OLD_SECRET}",
])
def test_a_malformed_or_weak_key_ring_is_refused(spec):
    with pytest.raises(SecretError) as refused:
        KeyRing.parse(spec)
    assert SECRET not in str(refused.value) and OLD_SECRET not in str(refused.value)
    assert "tiny" not in str(refused.value)


def test_a_ring_shows_its_kids_never_its_keys():
    ring = KeyRing.parse(f"k2:{SECRET},k1:{OLD_SECRET}")
    assert "k2" in repr(ring) and "k1" in repr(ring)
    assert SECRET not in repr(ring) and OLD_SECRET not in repr(ring) and "b'" not in repr(ring)


def test_a_single_secret_is_one_key_and_its_bearer_key_is_derived():
    ring = KeyRing.single(SECRET)
    assert ring.kids == ("main",)
    assert ring.key("main") != SECRET.encode()  # never the links' nor the console's key
    assert verify(KeyRing.parse(f"main:{SECRET}"), mint(ring, "dispatcher", "x")) is not None


tokenish = st.lists(st.sampled_from(["wh1", "wh2", "k2", ""]) | st.text(max_size=30), min_size=0,
                    max_size=5).map(".".join)


@settings(max_examples=300)
@given(token=tokenish | st.text(max_size=80))
def test_any_string_is_claims_or_none(token):
    # decode() sits in front of every request: whatever the header holds, it must not raise
    claims = decode(KEYS, token)
    assert claims is None or claims.role in ROLES
