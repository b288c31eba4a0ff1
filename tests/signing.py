"""Signed commands in tests: keys of the tests' own, made once per run, and one way to sign a command.

`signed(subject, body)` signs a command's dict as the gateway (any actor); `signed(..., signer=SIGNERS["notifier"])`
as a service. Owners built in a test verify with `VERIFY_KEYS`, every owner's keys (`KEYS_ENV` holds both variables)."""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any

from pydantic import BaseModel

from shared.ids import uuid7
from shared.runtime.requests import Answering
from shared.services import NAMES
from shared.signing import GATEWAY, RUNNER, Signer, Verifier, canonical, new_key, pair_keys

PRIVATE = {name: new_key() for name in (GATEWAY, "notifier", "routing", RUNNER)}
SIGNERS = {name: Signer.parse(f"{name}:{key}") for name, key in PRIVATE.items()}
# every owner's keys (a service is given only its own): the services, and the owners of the made-up
# subjects unit tests use (cmd.t, qry.x)
VERIFY_KEYS = pair_keys(PRIVATE, [*NAMES, "t", "x"])
VERIFIER = Verifier.parse(VERIFY_KEYS)
KEYS_ENV = {"WHISTLE_COMMAND_VERIFY_KEYS": VERIFY_KEYS, "WHISTLE_COMMAND_KEY": f"{GATEWAY}:{PRIVATE[GATEWAY]}"}


def signed(subject: str, body: dict[str, Any] | BaseModel, signer: Signer | None = None) -> dict[str, Any]:
    """The command (a dict as it goes on the wire, or a `Command`) signed for `subject` (as the gateway)."""
    message = body.model_dump(mode="json") if isinstance(body, BaseModel) else dict(body)
    message = {k: v for k, v in message.items() if v is not None}  # as the senders leave them out
    return (signer or SIGNERS[GATEWAY]).sign(subject, message)


def wire(subject: str, body: dict[str, Any] | BaseModel, signer: Signer | None = None) -> bytes:
    """`signed`, as bytes for NATS."""
    return json.dumps(signed(subject, body, signer), ensure_ascii=False).encode()


def with_key(subject: str, body: dict[str, Any], name: str, key: bytes) -> bytes:
    """`body` signed for `subject` under `name` with a pair key as it is (a key a service was given to verify
    with, used to sign for another owner: what a compromised service might try)."""
    message = {**body, "request_id": str(uuid7()), "signer": name}
    mac = hmac.digest(key, canonical(subject, message), "sha256")
    return json.dumps({**message, "signature": base64.urlsafe_b64encode(mac).decode()}).encode()


def answering() -> Answering:
    """An owner's request side that knows the tests' signers."""
    owner = Answering()
    owner.verifier = VERIFIER
    return owner
