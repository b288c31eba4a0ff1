"""Signed commands (shared/signing.py): what is signed, what an owner refuses, where the keys come from."""

from __future__ import annotations

import copy
import json
import stat
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.cli import keys
from shared import subjects
from shared.auth import SecretError
from shared.contracts import Command, Reply
from shared.runtime import Request, ServiceRuntime
from shared.runtime.requests import Answering, NoPayload
from shared.settings import ServiceSettings
from shared.signing import Signer, Verifier, canonical, new_key, pair_keys
from tests.signing import PRIVATE, SIGNERS, VERIFIER, VERIFY_KEYS, answering, signed, with_key

SUBJECT = subjects.CMD_RESPONSE_ACT
BODY = {"actor": {"role": "responder", "id": "d-housing"}, "payload": {"summons_id": "s1", "note": "漏雨 fixed"},
        "idempotency_key": "k-1", "expires_at": datetime(2026, 11, 30, 4, 0, tzinfo=UTC).isoformat(),
        "request_id": "0195f0a0-0000-7000-8000-000000000011"}


def test_the_canonical_form_is_sorted_compact_utf8_and_names_the_subject() -> None:
    assert canonical("cmd.x", {"payload": {"b": 1, "a": "漏"}, "actor": {"role": "system", "id": "n"}, "junk": 1}) == (
        '{"actor":{"id":"n","role":"system"},"expires_at":null,"idempotency_key":null,'
        '"payload":{"a":"漏","b":1},"request_id":null,"subject":"cmd.x"}').encode()
    # what the owner rebuilds from the parsed body is what was signed, whatever the sender's key order
    assert canonical("s", json.loads(json.dumps(BODY, ensure_ascii=True))) == canonical("s", dict(reversed(BODY.items())))


def test_a_signed_command_verifies_and_is_admitted() -> None:
    body = signed(SUBJECT, BODY)
    assert body["signer"] == "gateway" and body["signature"] and VERIFIER.check(SUBJECT, body) is None
    through = json.loads(json.dumps(body, ensure_ascii=False))  # as it crosses NATS
    assert VERIFIER.check(SUBJECT, through) is None
    command = Command.model_validate(through)
    assert command.signer == "gateway" and str(command.actor) == "responder:d-housing"


def test_the_signer_adds_a_request_id_so_every_command_is_one_of_a_kind() -> None:
    one = signed(SUBJECT, {"actor": {"role": "system", "id": "gateway"}, "payload": {}})
    two = signed(SUBJECT, {"actor": {"role": "system", "id": "gateway"}, "payload": {}})
    assert one["request_id"] != two["request_id"] and one["signature"] != two["signature"]


TAMPERED = [
    ("subject", None),
    ("actor", {"role": "supervisor", "id": "d-housing"}),
    ("actor", {"role": "responder", "id": "d-police"}),
    ("payload", {"summons_id": "s2", "note": "漏雨 fixed"}),
    ("payload", {"summons_id": "s1", "note": "漏雨 fixed", "extra": 1}),
    ("payload", {}),
    ("request_id", "0195f0a0-0000-7000-8000-000000000012"),
    ("expires_at", datetime(2027, 11, 30, 4, 0, tzinfo=UTC).isoformat()),
    ("expires_at", None),
    ("idempotency_key", "k-2"),
    ("idempotency_key", None),
]


@pytest.mark.parametrize(("field", "value"), TAMPERED)
def test_a_change_to_any_covered_field_is_refused(field: str, value: object) -> None:
    body = signed(SUBJECT, BODY)
    changed = copy.deepcopy(body)
    subject = SUBJECT
    if field == "subject":
        subject = subjects.CMD_RESPONSE_VERIFY  # the same body sent to another owner's subject
    elif value is None:
        del changed[field]
    else:
        changed[field] = value
    refused = VERIFIER.check(subject, changed)
    assert refused is not None and refused.refusal.status == 401 and refused.refusal.code == "bad_signature", field
    assert VERIFIER.check(SUBJECT, body) is None  # the original still verifies


@pytest.mark.parametrize(("change", "code"), [
    (lambda b: b.pop("signature"), "unsigned"),
    (lambda b: b.pop("signer"), "unsigned"),
    (lambda b: b.update(signature=""), "unsigned"),
    (lambda b: b.update(signer="intake"), "unknown_signer"),
    (lambda b: b.update(signer=["gateway"]), "unknown_signer"),
    (lambda b: b.update(signer="notifier"), "bad_signature"),  # another known signer's name on the gateway's signature
    (lambda b: b.update(signature="!!not base64!!"), "bad_signature"),
    (lambda b: b.update(signature="AAAA"), "bad_signature"),
    (lambda b: b.update(signature=12), "bad_signature"),
])
def test_unsigned_unknown_or_garbled_signatures_are_refused_401(change, code: str) -> None:
    body = signed(SUBJECT, BODY)
    change(body)
    refused = VERIFIER.check(SUBJECT, body)
    assert refused is not None and refused.refusal.status == 401 and refused.refusal.code == code
    assert " / " in refused.refusal.reason  # english / 中文


def test_a_key_not_among_the_verify_keys_is_refused_even_under_a_known_name() -> None:
    impostor = Signer.parse(f"gateway:{new_key()}")
    refused = VERIFIER.check(SUBJECT, signed(SUBJECT, BODY, impostor))
    assert refused is not None and refused.refusal.code == "bad_signature"


@pytest.mark.parametrize("actor", [
    {"role": "supervisor", "id": "xingcheng-street"},
    {"role": "dispatcher", "id": "notifier"},
    {"role": "system", "id": "routing"},  # the system, but under another service's name
    {"role": "system", "id": "notifier", "extra": 1},
])
def test_a_service_signer_may_carry_only_its_own_system_actor(actor: dict) -> None:
    body = signed(subjects.QRY_ROUTING_KNOWN, {"actor": actor, "payload": {"id": "d-housing"}}, SIGNERS["notifier"])
    refused = VERIFIER.check(subjects.QRY_ROUTING_KNOWN, body)  # the signature itself is good
    assert refused is not None and refused.refusal.status == 401 and refused.refusal.code == "bad_signature"
    own = signed(subjects.QRY_ROUTING_KNOWN, {"actor": {"role": "system", "id": "notifier"}, "payload": {}},
                 SIGNERS["notifier"])
    assert VERIFIER.check(subjects.QRY_ROUTING_KNOWN, own) is None


def test_admit_checks_the_signature_before_the_role_and_the_payload() -> None:
    request = Request("cmd.t", lambda *_: None, payload=NoPayload, roles=frozenset({"supervisor"}))
    unsigned = {"actor": {"role": "dispatcher", "id": "d"}, "payload": {"bogus": 1}}
    for owner in (answering(), Answering()):  # an owner without keys refuses everything
        refused = owner.admit(request, unsigned)
        assert isinstance(refused, Reply) and refused.refusal.status == 401 and refused.refusal.code == "unsigned"
    forged = signed("cmd.t", {"actor": {"role": "supervisor", "id": "s"}, "payload": {}}, SIGNERS["routing"])
    assert answering().admit(request, forged).refusal.status == 401
    assert Answering().admit(request, signed("cmd.t", {"actor": {"role": "supervisor", "id": "s"}})).refusal.code \
        == "unknown_signer"
    assert answering().admit(request, signed("cmd.t", {**unsigned, "actor": {"role": "supervisor", "id": "s"}})) \
        .refusal.status == 422
    assert answering().admit(request, signed("cmd.t", unsigned)).refusal.status == 403
    assert isinstance(answering().admit(request, signed("cmd.t", {"actor": {"role": "supervisor", "id": "s"}})), Command)


def test_the_runtime_refuses_to_start_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WHISTLE_COMMAND_KEY", "WHISTLE_COMMAND_VERIFY_KEYS", "WHISTLE_COMMAND_KEY_FILE",
                 "WHISTLE_COMMAND_VERIFY_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    runtime = ServiceRuntime("t", ServiceSettings())
    with pytest.raises(SecretError, match="WHISTLE_COMMAND_VERIFY_KEYS is not set"):
        runtime.require_keys()
    runtime = ServiceRuntime("t", ServiceSettings(command_verify_keys=VERIFY_KEYS))
    runtime.require_keys()  # an owner that asks no one needs no key of its own
    runtime.signs = True
    with pytest.raises(SecretError, match="WHISTLE_COMMAND_KEY is not set"):
        runtime.require_keys()
    secret = PRIVATE["notifier"]
    runtime = ServiceRuntime("t", ServiceSettings(command_verify_keys=VERIFY_KEYS, command_key=f"notifier:{secret}"))
    runtime.signs = True
    runtime.require_keys()
    body = json.loads(runtime.signed("qry.x", {"role": "system", "id": "notifier"}, {"a": 1}))
    assert body["signer"] == "notifier" and VERIFIER.check("qry.x", body) is None


@pytest.mark.parametrize("value", ["gateway", "gateway:short", ":" + new_key(), "gateway:" + "A" * 60])
def test_a_malformed_key_is_refused_at_settings_without_repeating_it(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ServiceSettings(command_key=value)
    assert "malformed" in str(caught.value)
    secret = value.partition(":")[2]
    assert not secret or secret not in str(caught.value)
    with pytest.raises(ValidationError, match="malformed"):
        ServiceSettings(command_verify_keys=f"{VERIFY_KEYS},{value}")
    with pytest.raises(ValidationError, match="signer@owner"):  # a signer's secret given where an owner's keys go
        ServiceSettings(command_verify_keys=f"gateway:{new_key()}")


def test_keys_from_files(tmp_path) -> None:
    (tmp_path / "key").write_text(f"routing:{PRIVATE['routing']}\n")
    (tmp_path / "pub").write_text(VERIFY_KEYS + "\n")
    s = ServiceSettings(command_key_file=tmp_path / "key", command_verify_keys_file=tmp_path / "pub")
    assert s.command_signer().name == "routing" and s.command_verifier().signers == set(PRIVATE)


def test_whistle_up_makes_the_keys_once_private_from_the_first_byte(tmp_path) -> None:
    made = keys.command_keys(tmp_path, ["gateway", "notifier"])
    path = tmp_path / keys.COMMAND_KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.command_keys(tmp_path, ["gateway", "notifier", "runner"])["gateway"] == made["gateway"]
    verify = Verifier.parse(keys.verify_keys(keys.command_keys(tmp_path, ["gateway", "runner"]), ["x"]))
    assert set(verify.keys) == {("gateway", "x"), ("runner", "x")}
    runner = Signer.parse(f"runner:{made.get('runner') or keys.command_keys(tmp_path, ['runner'])['runner']}")
    body = json.loads(runner.body("cmd.x", {"role": "system", "id": "runner"}, {}))
    assert verify.check("cmd.x", body) is None
    assert made["gateway"] not in keys.verify_keys(made, ["x"])  # an owner gets a key derived for it, never the secret


def test_an_owner_holds_only_its_own_keys_so_it_cannot_sign_for_another_owner() -> None:
    """What a compromised service could forge with its keys: commands to itself, nothing more."""
    response = Verifier.parse(pair_keys(PRIVATE, ["response"]))
    routing = Verifier.parse(pair_keys(PRIVATE, ["routing"]))
    assert response.check(SUBJECT, signed(SUBJECT, BODY)) is None
    assert routing.check(SUBJECT, signed(SUBJECT, BODY)).refusal.code == "unknown_signer"  # not its owner's
    # the response service signs a supervisor's command to routing with the gateway's key it was given
    subject = subjects.CMD_ROUTING_RESPONDER_PUT
    stolen = response.keys[("gateway", "response")]
    body = json.loads(with_key(subject, {"actor": {"role": "supervisor", "id": "s"}, "payload": {}}, "gateway", stolen))
    refused = routing.check(subject, body)
    assert refused is not None and refused.refusal.code == "bad_signature"
    assert stolen not in routing.keys.values() and len(set(response.keys.values())) == len(PRIVATE)
