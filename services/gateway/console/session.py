"""The console's session cookie and CSRF tokens: HMAC-signed, expiring, stateless to check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from shared.contracts import Actor

SESSION_COOKIE = "whistle_session"
PRESESSION_COOKIE = "whistle_csrf"  # the sign-in form's CSRF token, before anyone is signed in
LANG_COOKIE = "whistle_lang"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """Who is signed in, until when, and the CSRF token every form of theirs carries."""

    role: str
    id: str
    csrf: str
    expires: int

    @property
    def actor(self) -> Actor:
        return Actor(role=self.role, id=self.id)


class Signer:
    """Signs and checks the console's cookies with a key derived from the gateway's auth secret."""

    def __init__(self, secret: str, ttl_s: int):
        # derived, so a console cookie can never pass for a bearer token nor the other way round
        self.key = hmac.new(secret.encode(), b"whistle-console-session-v1", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())

    def _check(self, value: str) -> str | None:
        if not value.isascii():  # every cookie we sign is base64: anything else is forged
            return None
        payload, _, sig = value.partition(".")
        if not payload or not sig or not hmac.compare_digest(self._sign(payload).encode(), sig.encode("utf-8", "replace")):
            return None
        return payload

    def issue(self, actor: Actor, now: float | None = None) -> tuple[str, Session]:
        """A fresh session for `actor` (a new CSRF token with it) and its cookie value."""
        now = time.time() if now is None else now
        session = Session(actor.role, actor.id, secrets.token_urlsafe(24), int(now) + self.ttl_s)
        payload = _b64(json.dumps([session.role, session.id, session.csrf, session.expires]).encode())
        return f"{payload}.{self._sign(payload)}", session

    def load(self, value: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged, malformed or expired."""
        payload = self._check(value or "")
        if payload is None:
            return None
        try:
            role, subject, csrf, expires = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        if not isinstance(expires, int) or expires <= (time.time() if now is None else now):
            return None
        if role not in ("dispatcher", "supervisor", "responder") or not isinstance(subject, str) or not subject:
            return None
        return Session(role, subject, str(csrf), expires)

    def presession(self) -> str:
        """A signed random token for the sign-in form's cookie (double submit)."""
        token = secrets.token_urlsafe(24)
        return f"{token}.{self._sign('pre:' + token)}"

    def presession_token(self, value: str | None) -> str | None:
        """The token of a genuine pre-session cookie, else None."""
        token, _, sig = (value or "").partition(".")
        if not (value or "").isascii() or not token or not hmac.compare_digest(self._sign("pre:" + token).encode(), sig.encode("utf-8", "replace")):
            return None
        return token


def csrf_ok(expected: str | None, given: str | None) -> bool:
    """Whether a form's CSRF field matches the token its session (or pre-session) holds."""
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), str(given).encode("utf-8", "replace"))


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path inside the console (no open redirect)."""
    if not target or not target.startswith("/console/") or target.startswith("//") or "\\" in target \
            or any(ord(c) < 32 for c in target):
        return "/console/"
    return target
