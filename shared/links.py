"""One-tap report links (一键报到): a signed token naming one responder, one summons, an expiry and a nonce.

Stateless to check, like the bearer tokens (`shared/auth.py`), and signed with the same secret under
its own prefix, so neither kind of token passes for the other. "Works once" is not kept here: the
gateway sends the report with the nonce as its Idempotency-Key, so the owner answers a second tap
with the first reply.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

VERSION = "ak1"
_DOMAIN = b"ack-link\n"  # a bearer token's signature can never be an ack link's


class LinkInvalid(ValueError):
    """Malformed, signed with another key, or altered."""


class LinkExpired(ValueError):
    """Well signed, but past its expiry."""


@dataclass(frozen=True)
class AckClaim:
    responder_id: str
    summons_id: str
    expires_at: datetime
    nonce: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), _DOMAIN + payload.encode(), hashlib.sha256).digest()[:20])


def mint(secret: str, responder_id: str, summons_id: str | UUID, expires_at: datetime, nonce: str | None = None) -> str:
    """A one-tap link's token for `responder_id` to report `summons_id`, good until `expires_at`."""
    if not responder_id or "\n" in responder_id:
        raise ValueError("a link must name one responder")
    nonce = nonce or secrets.token_urlsafe(12)
    summons = UUID(str(summons_id))  # a summons id, nothing else
    payload = _b64(f"{responder_id}\n{summons.hex}\n{int(expires_at.timestamp())}\n{nonce}".encode())
    return f"{VERSION}.{payload}.{_sign(secret, payload)}"


def verify(secret: str, token: str, now: datetime) -> AckClaim:
    """The claim a token makes; LinkInvalid if it is not ours or was altered, LinkExpired if too late."""
    try:
        version, payload, sig = token.split(".")
    except ValueError:
        raise LinkInvalid("malformed") from None
    if version != VERSION or not hmac.compare_digest(_sign(secret, payload).encode(),
                                                      sig.encode("utf-8", "surrogatepass")):
        raise LinkInvalid("bad signature")
    try:
        responder_id, summons_hex, expires, nonce = _unb64(payload).decode().split("\n")
        claim = AckClaim(responder_id, str(UUID(hex=summons_hex)), datetime.fromtimestamp(int(expires), UTC), nonce)
    except (ValueError, UnicodeDecodeError):
        raise LinkInvalid("malformed") from None
    if not responder_id or not nonce:
        raise LinkInvalid("malformed")
    if now >= claim.expires_at:
        raise LinkExpired(claim.expires_at.isoformat())
    return claim
