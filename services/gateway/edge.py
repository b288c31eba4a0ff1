"""The HTTP edge as plain ASGI middleware: body size, JSON only, bearer token, rate limit, metrics.

Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware wraps every
request in a task group and memory streams, which cost more CPU than the rest of a POST
/v1/whistles (profiled with py-spy under the intake bench).

A route may also have a fast path (`fast`): given the whole body and the caller, it answers the
ordinary case itself, or returns None and the request goes through FastAPI as if nothing had
happened (the body replayed), so every refusal keeps FastAPI's exact shape.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

from services.gateway.limits import TokenBuckets, retry_after
from services.gateway.revocations import Revocations
from shared import auth, telemetry
from shared.contracts import Actor

Scope = dict
ASGIApp = Callable
Answer = tuple[int, bytes]  # status, JSON body
FastPath = Callable[[Scope, bytes, Actor | None], Awaitable[Answer | None]]


class TokenCache:
    """Bearer tokens checked against the key ring (and the bad ones, as None): a token's HMAC is checked
    once, not per request; its expiry and the revocation list are looked at every time."""

    def __init__(self, keys: auth.KeyRing, revocations: Revocations | None = None, max_size: int = 10_000):
        self.keys = keys
        self.revocations = revocations  # None: well-signed and unexpired is enough (unit tests of the edge)
        self.max_size = max_size
        self._known: dict[str, auth.Claims | None] = {}

    @property
    def ready(self) -> bool:
        """Whether a revoked token can be told apart yet (the list loaded from routing)."""
        return self.revocations is None or self.revocations.loaded

    def claims(self, token: str, now: float | None = None) -> auth.Claims | None:
        """The claims of a token that is ours, unexpired and not revoked; else None."""
        try:
            claims = self._known[token]
        except KeyError:
            if len(self._known) >= self.max_size:  # random tokens must not grow it without bound
                self._known.clear()
            claims = self._known[token] = auth.decode(self.keys, token)
        if claims is None or claims.expired(now):
            return None
        if self.revocations is not None and self.revocations.revoked(claims):
            return None
        return claims

    def actor(self, token: str, now: float | None = None) -> Actor | None:
        claims = self.claims(token, now)
        return None if claims is None else claims.actor


async def _read_body(receive, cap: int) -> bytes | bool | None:
    """The whole request body; False as soon as it grows past `cap` (the rest unread); None if the client went away."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return False
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A receive that hands the app the body already read, then whatever comes next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> dict:
        return pending.pop() if pending else await receive()

    return replay


async def _send_json(send, status: int, content: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]})
    await send({"type": "http.response.body", "body": content})


def _error(status: int, code: str, reason: str, extra: list[tuple[bytes, bytes]] = ()) -> tuple[int, list, bytes]:
    body = json.dumps({"error": {"code": code, "reason": reason, "field": None}}, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    return status, headers, body


class Edge:
    """413 / 415 / 401 / 429 before anything else runs; the caller's actor in `request.state.actor`."""

    def __init__(self, app: ASGIApp, *, tokens: TokenCache, limiter: TokenBuckets, max_body_bytes: int,
                 max_import_bytes: int, fast: dict[tuple[str, str], FastPath] | None = None):
        self.app = app
        self.fast = fast or {}
        self.tokens = tokens
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes
        self.max_import_bytes = max_import_bytes

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        refused = self._refusal(scope)
        status = 500
        fast = self.fast.get((scope["method"], scope["path"])) if refused is None else None
        body: bytes | bool | None = None
        if refused is None and (fast or scope["state"]["has_body"]):
            # read here, counting bytes as they arrive (chunked or not): past the cap the answer is 413 at
            # once and the rest is never read; the app gets the body replayed
            cap = self._cap(scope)
            body = await _read_body(receive, cap)
            if body is None:  # the client went away
                return
            if body is False:
                refused = _error(413, "too_large", f"body over {cap} bytes / 请求体过大", [(b"connection", b"close")])
        if refused is None and fast:
            answered = await fast(scope, body, scope["state"]["actor"])
            if answered is not None:
                status, content = answered
                await _send_json(send, status, content)
                telemetry.HTTP_REQUESTS.labels(scope["path"], str(status)).inc()
                telemetry.HTTP_LATENCY.labels(scope["path"]).observe(time.perf_counter() - started)
                return
        if refused is None and body is not None:
            receive = _replay(body, receive)
        if refused is None:
            async def send_and_see(message: dict) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_and_see)
            finally:
                route = scope.get("route")
                label = route.path if route is not None else "unmatched"
                telemetry.HTTP_REQUESTS.labels(label, str(status)).inc()
                telemetry.HTTP_LATENCY.labels(label).observe(time.perf_counter() - started)
            return
        status, headers, body = refused
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        telemetry.HTTP_REQUESTS.labels("unmatched", str(status)).inc()
        telemetry.HTTP_LATENCY.labels("unmatched").observe(time.perf_counter() - started)

    def _cap(self, scope: Scope) -> int:
        return self.max_import_bytes if scope["path"] == "/v1/imports" else self.max_body_bytes

    def _refusal(self, scope: Scope) -> tuple[int, list, bytes] | None:
        """The answer for a request refused at the edge, or None (its actor and whether it has a body then set
        on the scope)."""
        headers: dict[bytes, bytes] = {}
        for k, v in scope["headers"]:  # the first of a repeated header, as Starlette's Headers.get
            headers.setdefault(k.lower(), v)
        path: str = scope["path"]
        length = headers.get(b"content-length", b"").decode("latin-1").strip()
        has_body = (length not in ("", "0") or b"transfer-encoding" in headers)
        media = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        cap = self._cap(scope)
        actor = None
        if length.isascii() and length.isdigit() and (len(length) > 15 or int(length) > cap):
            return _error(413, "too_large", f"body over {cap} bytes / 请求体过大")
        # the resident's page posts a plain HTML form (no script on a phone-sized page)
        form = path.startswith("/r/") and path.endswith("/answer") and media == "application/x-www-form-urlencoded"
        if path.startswith(("/v1/", "/r/")) and has_body and scope["method"] in ("POST", "PUT", "PATCH") \
                and media != "application/json" and not form:
            return _error(415, "unsupported_media_type", "send JSON (Content-Type: application/json) / 请发送 JSON")
        if path.startswith("/v1/"):
            if not self.tokens.ready:  # a revoked token would pass: nobody does until the list is loaded
                return _error(503, "starting", "the gateway is still starting; retry shortly / 网关正在启动，请稍后重试",
                              [(b"retry-after", b"1")])
            scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            actor = self.tokens.actor(token.strip()) if scheme.lower() == "bearer" else None
            if actor is None:
                return _error(401, "unauthenticated", "a valid bearer token is required / 需要有效的令牌",
                              [(b"www-authenticate", b"Bearer")])
        if path.startswith(("/v1/", "/r/", "/a/", "/open311/")):
            client = scope.get("client")
            wait = self.limiter.take(str(actor) if actor else f"addr:{client[0] if client else '?'}")
            if wait:
                return _error(429, "rate_limited", "too many requests; retry later / 请求过于频繁，请稍后再试",
                              [(b"retry-after", retry_after(wait).encode())])
        state = scope.setdefault("state", {})
        state["actor"], state["has_body"] = actor, has_body
        return None
