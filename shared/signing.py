"""Signed commands: an owner no longer trusts the actor a request's body names, only a signature over it.

A signer holds an Ed25519 private key; every service holds the signers' public keys. The gateway signs
each command it forwards and may carry any actor it authenticated; a service that asks another one as
the system (the notifier, routing, the runner setting the demo's passwords) signs too, and may carry
only `{"role": "system", "id": <its own name>}`. The signature covers the subject, request_id, actor,
expires_at, idempotency_key and payload, in a canonical JSON (sorted keys, compact, UTF-8) rebuilt by
the owner from the body it parsed: no field can be changed, nor the command sent to another subject.

Keys travel as `name:base64` (the raw 32 bytes, URL-safe or standard base64, padding optional):
WHISTLE_COMMAND_KEY holds a process's own private key, WHISTLE_COMMAND_VERIFY_KEYS every signer's
public key, comma-separated. `whistle up` makes them (services/cli/keys.py).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.auth import SecretError
from shared.contracts import Reply
from shared.ids import uuid7

GATEWAY = "gateway"  # the one signer that may carry a person's actor
RUNNER = "runner"  # `whistle up` itself (services/cli/console_accounts.py), as the NATS admin
COVERED = ("request_id", "actor", "expires_at", "idempotency_key", "payload")  # with the subject

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


def _b64decode(text: str) -> bytes:
    text = text.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _named(spec: str, what: str) -> tuple[str, bytes]:
    name, sep, encoded = spec.strip().partition(":")
    try:
        raw = _b64decode(encoded) if sep and name else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise SecretError(f"{what} is malformed: each key is name:base64 of 32 bytes / {what} 格式错误：每个密钥"
                          "应为 名称:32 字节的 base64")
    return name.strip(), raw


def new_private() -> str:
    """A new private key, base64 (its raw 32 bytes)."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return _b64encode(raw)


def public_of(private: str) -> str:
    """The public key (base64) of a private one (base64)."""
    key = Ed25519PrivateKey.from_private_bytes(_b64decode(private))
    return _b64encode(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


@dataclass(frozen=True)
class Signer:
    """A process's own key: `name` is what owners know it by."""

    name: str
    key: Ed25519PrivateKey

    @classmethod
    def parse(cls, spec: str | None, what: str = "WHISTLE_COMMAND_KEY") -> Signer:
        """From "name:base64"; SecretError (never repeating the key) when missing or malformed."""
        if not spec or not spec.strip():
            raise SecretError(f"{what} is not set: this process signs the commands it sends and has no key"
                              f" (`whistle up` makes one) / 未设置 {what}：本进程须签名所发命令（whistle up 会自动生成）")
        name, raw = _named(spec, what)
        return cls(name, Ed25519PrivateKey.from_private_bytes(raw))

    def sign(self, subject: str, message: dict[str, Any]) -> dict[str, Any]:
        """`message` (JSON-ready: what goes on the wire) with a request_id if it had none, signed for `subject`."""
        message.setdefault("request_id", str(uuid7()))
        message["signer"] = self.name
        message["signature"] = _b64encode(self.key.sign(canonical(subject, message)))
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
    """Every signer's public key, by name."""

    keys: dict[str, Ed25519PublicKey]

    @classmethod
    def parse(cls, spec: str | None, what: str = "WHISTLE_COMMAND_VERIFY_KEYS") -> Verifier:
        """From "name:base64,name:base64"; SecretError when missing or malformed."""
        if not spec or not spec.strip():
            raise SecretError(f"{what} is not set: an owner verifies every command against the signers' public"
                              f" keys (`whistle up` makes them) / 未设置 {what}：服务须以签名者公钥验证每条命令")
        keys = dict(_named(one, what) for one in spec.split(",") if one.strip())
        return cls({name: Ed25519PublicKey.from_public_bytes(raw) for name, raw in keys.items()})

    def check(self, subject: str, body: Any) -> Reply | None:
        """None when `body` is signed by a known signer, for `subject`, unchanged, and a service signer
        carries only its own system actor; else the 401 to answer (nothing is done)."""
        if not isinstance(body, dict):
            return UNSIGNED
        signer, signature = body.get("signer"), body.get("signature")
        if not signer or not signature:
            return UNSIGNED
        key = self.keys.get(signer) if isinstance(signer, str) else None
        if key is None:
            return UNKNOWN_SIGNER
        try:
            key.verify(_b64decode(signature), canonical(subject, body))
        except (InvalidSignature, ValueError, TypeError, AttributeError):
            return BAD_SIGNATURE
        if signer != GATEWAY and body.get("actor") != {"role": "system", "id": signer}:
            return NOT_ITS_ACTOR
        return None
