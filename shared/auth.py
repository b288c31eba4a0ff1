"""Bearer tokens: one role and one id, with an id of their own (`jti`), when they were issued (`iat`),
when they expire (`exp`) and which key signed them (`kid`). HMAC-SHA256, stateless to check.

    wh2.<kid>.<payload>.<signature>      payload: base64url of JSON [role, id, jti, iat, exp]

A `KeyRing` holds the keys the gateway accepts, the first one signing: rotating the key means putting
a new one first and keeping the old one second until every token it signed has expired or been
replaced, so nobody is logged out. A token whose kid is not in the ring is refused.

Revocation (one token by its jti, all of a responder's by a "not before", a deactivated responder)
is not in the token: the gateway keeps the list (services/gateway/revocations.py).

There is no default secret anywhere: `check_secret` refuses a missing or short one, and every setting
holding a signing secret uses it, so a process with no secret refuses to start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from dataclasses import dataclass, field

from shared.contracts import Actor

ROLES = ("dispatcher", "supervisor", "responder")
VERSION = "wh2"
MIN_SECRET_BYTES = 32
DEFAULT_KID = "main"  # the kid of a ring made of WHISTLE_AUTH_SECRET alone (no WHISTLE_SIGNING_KEYS)
DEFAULT_TTL_S = 30 * 24 * 3600
_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_DOMAIN = b"whistle-bearer-token-v2"  # a bearer key is derived: never the links' or the console's key


class SecretError(ValueError):
    """A signing secret that is missing, too short or malformed: the process must not start with it."""


def check_secret(value: str | None, name: str) -> str:
    """`value` if it can sign: at least MIN_SECRET_BYTES bytes; SecretError naming `name` otherwise.
    The message never repeats the secret."""
    if not value or not value.strip():
        raise SecretError(
            f"{name} is not set: there is no default secret. Generate one, e.g. python -c \"import secrets;"
            f" print(secrets.token_urlsafe(32))\" (`whistle up` makes its own) / 未设置 {name}：没有默认密钥，"
            "请生成一个（whistle up 会自动生成）")
    size = len(value.encode())
    if size < MIN_SECRET_BYTES:
        raise SecretError(f"{name} is too short: {size} bytes, it needs at least {MIN_SECRET_BYTES}"
                          f" / {name} 太短：{size} 字节，至少需要 {MIN_SECRET_BYTES} 字节")
    return value


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class KeyRing:
    """The keys bearer tokens are checked with, by kid; the first one signs. Its repr shows kids only."""

    keys: tuple[tuple[str, bytes], ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise SecretError("a key ring needs at least one key / 至少需要一个签名密钥")
        kids = [kid for kid, _ in self.keys]
        if len(set(kids)) != len(kids):
            raise SecretError(f"a kid appears twice in the signing keys: {kids} / 签名密钥编号重复")

    def __repr__(self) -> str:
        return f"KeyRing(kids={self.kids!r})"

    @staticmethod
    def _derive(secret: str) -> bytes:
        return hmac.new(secret.encode(), _DOMAIN, hashlib.sha256).digest()

    @classmethod
    def single(cls, secret: str, kid: str = DEFAULT_KID, name: str = "WHISTLE_AUTH_SECRET") -> KeyRing:
        """One key: `secret` under `kid`."""
        if not _KID.match(kid):
            raise SecretError(f"{name}: a kid is 1–32 letters, digits, '-' or '_' / 密钥编号格式不对")
        return cls(((kid, cls._derive(check_secret(secret, name))),))

    @classmethod
    def parse(cls, spec: str, name: str = "WHISTLE_SIGNING_KEYS") -> KeyRing:
        """"kid:secret,kid:secret" (the first signs); SecretError naming `name` for anything wrong."""
        keys = []
        for i, part in enumerate(p.strip() for p in (spec or "").split(",")):
            if not part:
                continue
            kid, sep, secret = part.partition(":")
            if not sep or not _KID.match(kid.strip()):
                raise SecretError(f"{name}: key {i + 1} is not kid:secret (a kid is 1–32 letters, digits, '-' or '_')"
                                  f" / {name} 第 {i + 1} 个密钥格式应为 编号:密钥")
            keys.append((kid.strip(), cls._derive(check_secret(secret.strip(), f"{name} ({kid.strip()})"))))
        if not keys:
            check_secret("", name)  # raises: not set
        return cls(tuple(keys))

    @property
    def kid(self) -> str:
        """The kid new tokens are signed with."""
        return self.keys[0][0]

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(kid for kid, _ in self.keys)

    def key(self, kid: str) -> bytes | None:
        for known, key in self.keys:
            if hmac.compare_digest(known.encode(), kid.encode("utf-8", "surrogatepass")):
                return key
        return None


@dataclass(frozen=True)
class Claims:
    """What a well-signed token says. `actor` is built once (the gateway caches claims per token)."""

    role: str
    sub: str
    jti: str
    iat: float  # seconds since the epoch, to the millisecond
    exp: int  # seconds since the epoch
    kid: str
    actor: Actor = field(compare=False, repr=False)

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.exp


def _sign(key: bytes, kid: str, payload: str) -> str:
    return _b64(hmac.new(key, f"{VERSION}.{kid}.{payload}".encode(), hashlib.sha256).digest())


def mint(keys: KeyRing, role: str, subject_id: str, *, ttl_s: float = DEFAULT_TTL_S, now: float | None = None,
         jti: str | None = None) -> str:
    """A token for `role` acting as `subject_id`, signed with the ring's first key, good for `ttl_s`."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if not subject_id:
        raise ValueError("a token must name someone")
    if not ttl_s or not math.isfinite(ttl_s):
        raise ValueError("a token must expire")
    now = time.time() if now is None else now
    # issued-at to the millisecond, rounded down: a token minted before a "not before" is never taken for a later one
    claims = [role, subject_id, jti or secrets.token_urlsafe(12), math.floor(now * 1000) / 1000, int(now + ttl_s)]
    payload = _b64(json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode())
    kid, key = keys.keys[0]
    return f"{VERSION}.{kid}.{payload}.{_sign(key, kid, payload)}"


def decode(keys: KeyRing, token: str) -> Claims | None:
    """The claims of a token signed by a key of the ring, expired or not; None for anything else
    (malformed, another version, an unknown kid, a bad signature). Never raises."""
    try:
        version, kid, payload, sig = token.split(".")
    except (ValueError, AttributeError):
        return None
    if version != VERSION or not payload or len(token) > 2048:
        return None
    key = keys.key(kid)
    if key is None:
        return None
    if not hmac.compare_digest(_sign(key, kid, payload).encode(), sig.encode("utf-8", "surrogatepass")):
        return None
    try:
        role, sub, jti, iat, exp = json.loads(_unb64(payload))
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    if role not in ROLES or not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti:
        return None
    if isinstance(iat, bool) or not isinstance(iat, int | float) or isinstance(exp, bool) or not isinstance(exp, int):
        return None
    return Claims(role, sub, jti, float(iat), exp, kid, Actor(role=role, id=sub))


def verify(keys: KeyRing, token: str, now: float | None = None) -> Claims | None:
    """The claims of a token that is ours and not expired, else None (revocation is the gateway's)."""
    claims = decode(keys, token)
    return None if claims is None or claims.expired(now) else claims
