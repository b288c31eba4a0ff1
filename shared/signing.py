"""Signed commands: an owner no longer trusts the actor a request's body names, only a signature over it.

Each signer (the gateway, a service that asks another one as the system, the runner) holds a secret of its
own, 32 random bytes. From it comes one key per owner it sends to, `HMAC-SHA256(secret, "whistle-command:"
+ owner)`, the owner being the second token of the subject (`cmd.<owner>.…`, `qry.<owner>.…`), and each
owner is given only the keys meant for itself. A command carries `HMAC-SHA256(pair key, canonical form)`.

Why HMAC and not signatures: the same guarantee here at a few microseconds instead of 130 (Ed25519
verification was a fifth of intake's CPU at full load, signing a quarter of the gateway's). What
signatures would add is that an owner cannot forge what its signers send; with a key per signer and
owner, what an owner's key can forge is only commands to itself, which it could carry out anyway.

The gateway signs each command it forwards and may carry any actor it authenticated; a service that asks
another one as the system (the notifier, routing, the runner setting the demo's passwords) signs too, and
may carry only `{"role": "system", "id": <its own name>}`. The MAC covers the subject, request_id, actor,
expires_at, idempotency_key and payload, in a canonical JSON (sorted keys, compact, UTF-8) rebuilt by the
owner from the body it parsed: no field can be changed, nor the command sent to another subject.

Keys travel as base64 (the raw 32 bytes, URL-safe or standard, padding optional): WHISTLE_COMMAND_KEY
holds a signer's secret as `name:base64`, WHISTLE_COMMAND_VERIFY_KEYS an owner's keys as
`signer@owner:base64,…` (`pair_keys` makes them). `whistle up` makes both (services/cli/keys.py).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.auth import SecretError
from shared.contracts import Reply
from shared.ids import uuid7

GATEWAY = "gateway"  # the one signer that may carry a person's actor
RUNNER = "runner"  # `whistle up` itself (services/cli/console_accounts.py), as the NATS admin
COVERED = ("request_id", "actor", "expires_at", "idempotency_key", "payload")  # with the subject
DERIVE = b"whistle-command:"  # a pair key is HMAC(signer's secret, DERIVE + owner)

UNSIGNED = Reply.refuse(401, "unsigned", "the command is not signed; nothing was done / 命令未签名，未执行")
UNKNOWN_SIGNER = Reply.refuse(401, "unknown_signer", "the command's signer is not known; nothing was done"
                              " / 命令签名者未知，未执行")
BAD_SIGNATURE = Reply.refuse(401, "bad_signature", "the command's signature does not match it; nothing was done"
                             " / 命令签名无效，未执行")
NOT_ITS_ACTOR = Reply.refuse(401, "bad_signature", "a service may sign only as the system, under its own name;"
                             " nothing was done / 服务只能以自身名义（系统）签名，未执行")


def canonical(subject: str, body: dict[str, Any]) -> bytes:
    """What is signed: the subject and the covered fields of the body as it goes on the wire (a missing
    field as null), sorted, compact, UTF-8 (half a surrogate pair passed through, never an error)."""
    covered = {name: body.get(name) for name in COVERED}
    covered["subject"] = subject
    return json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=False) \
        .encode("utf-8", "surrogatepass")


def owner_of(subject: str) -> str:
    """The service a request subject goes to: `cmd.response.act` → `response`."""
    tokens = subject.split(".")
    return tokens[1] if len(tokens) > 1 else subject


def _b64decode(text: str) -> bytes:
    text = text.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _named(spec: str, what: str) -> tuple[str, bytes]:
    name, sep, encoded = spec.strip().partition(":")
    try:
        raw = _b64decode(encoded) if sep and name.strip() else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise SecretError(f"{what} is malformed: each key is name:base64 of 32 bytes / {what} 格式错误：每个密钥"
                          "应为 名称:32 字节的 base64")
    return name.strip(), raw


def new_key() -> str:
    """A new signer's secret, base64 (32 random bytes)."""
    return _b64encode(secrets.token_bytes(32))


def _pair(secret: bytes, owner: str) -> bytes:
    return hmac.digest(secret, DERIVE + owner.encode(), "sha256")


def pair_keys(signers: dict[str, str], owners: Iterable[str]) -> str:
    """WHISTLE_COMMAND_VERIFY_KEYS for `owners`: each signer's key for each of them (`signers`: name → secret
    in base64), "signer@owner:base64,…". A service is given only its own owner's."""
    return ",".join(f"{name}@{owner}:{_b64encode(_pair(_b64decode(secret), owner))}"
                    for owner in owners for name, secret in signers.items())


@dataclass(frozen=True)
class Signer:
    """A signer's secret: `name` is what owners know it by."""

    name: str
    secret: bytes = field(repr=False)
    _keys: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)  # by owner, made once

    @classmethod
    def parse(cls, spec: str | None, what: str = "WHISTLE_COMMAND_KEY") -> Signer:
        """From "name:base64"; SecretError (never repeating the key) when missing or malformed."""
        if not spec or not spec.strip():
            raise SecretError(f"{what} is not set: this process signs the commands it sends and has no key"
                              f" (`whistle up` makes one) / 未设置 {what}：本进程须签名所发命令（whistle up 会自动生成）")
        return cls(*_named(spec, what))

    def key_for(self, owner: str) -> bytes:
        key = self._keys.get(owner)
        if key is None:
            key = self._keys[owner] = _pair(self.secret, owner)
        return key

    def sign(self, subject: str, message: dict[str, Any]) -> dict[str, Any]:
        """`message` (JSON-ready: what goes on the wire) with a request_id if it had none, signed for `subject`."""
        message.setdefault("request_id", str(uuid7()))
        message["signer"] = self.name
        mac = hmac.digest(self.key_for(owner_of(subject)), canonical(subject, message), "sha256")
        message["signature"] = _b64encode(mac)
        return message

    def body(self, subject: str, actor: Any, payload: Any = None, **fields: Any) -> bytes:
        """A signed command's bytes: `actor` an `Actor` or its dict, `payload` JSON-ready or a model."""
        from pydantic import BaseModel

        message: dict[str, Any] = {
            "actor": actor.model_dump(mode="json") if isinstance(actor, BaseModel) else actor,
            "payload": payload.model_dump(mode="json") if isinstance(payload, BaseModel) else (payload or {}),
            **{k: v for k, v in fields.items() if v is not None},
        }
        return json.dumps(self.sign(subject, message), ensure_ascii=False).encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Verifier:
    """An owner's keys, by (signer, owner): only those meant for it."""

    keys: dict[tuple[str, str], bytes] = field(repr=False)

    @classmethod
    def parse(cls, spec: str | None, what: str = "WHISTLE_COMMAND_VERIFY_KEYS") -> Verifier:
        """From "signer@owner:base64,…"; SecretError when missing or malformed."""
        if not spec or not spec.strip():
            raise SecretError(f"{what} is not set: an owner verifies every command with its signers' keys"
                              f" (`whistle up` makes them) / 未设置 {what}：服务须以签名者密钥验证每条命令")
        keys: dict[tuple[str, str], bytes] = {}
        for one in spec.split(","):
            if one.strip():
                pair, raw = _named(one, what)
                signer, at, owner = pair.partition("@")
                if not (signer and at and owner):
                    raise SecretError(f"{what} is malformed: each key is signer@owner:base64 / {what} 格式错误："
                                      "每个密钥应为 签名者@服务:base64")
                keys[(signer, owner)] = raw
        return cls(keys)

    @property
    def signers(self) -> set[str]:
        return {signer for signer, _ in self.keys}

    def check(self, subject: str, body: Any) -> Reply | None:
        """None when `body` is signed by a known signer, for `subject`, unchanged, and a service signer
        carries only its own system actor; else the 401 to answer (nothing is done)."""
        if not isinstance(body, dict):
            return UNSIGNED
        signer, signature = body.get("signer"), body.get("signature")
        if not signer or not signature:
            return UNSIGNED
        key = self.keys.get((signer, owner_of(subject))) if isinstance(signer, str) else None
        if key is None:
            return UNKNOWN_SIGNER
        try:
            good = hmac.compare_digest(_b64decode(signature), hmac.digest(key, canonical(subject, body), "sha256"))
        except (ValueError, TypeError, AttributeError):
            good = False
        if not good:
            return BAD_SIGNATURE
        if signer != GATEWAY and body.get("actor") != {"role": "system", "id": signer}:
            return NOT_ITS_ACTOR
        return None
