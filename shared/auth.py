"""Bearer tokens that name one role and one id, signed with HMAC-SHA256 (stateless to check)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from shared.contracts import Actor

ROLES = ("dispatcher", "supervisor", "responder")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mint(secret: str, role: str, subject_id: str) -> str:
    """A token for `role` acting as `subject_id`."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if not subject_id:
        raise ValueError("a token must name someone")
    payload = _b64(f"{role}:{subject_id}".encode())
    sig = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
    return f"wh1.{payload}.{sig}"


def verify(secret: str, token: str) -> Actor | None:
    """The actor a token names, or None if it is malformed or not ours."""
    try:
        version, payload, sig = token.split(".")
    except ValueError:
        return None
    if version != "wh1":
        return None
    expected = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "surrogatepass")):
        return None
    try:
        role, _, subject_id = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    if role not in ROLES or not subject_id:
        return None
    return Actor(role=role, id=subject_id)
