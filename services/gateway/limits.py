"""Limits on what the HTTP edge takes in: per-caller rate limits (a token bucket per bearer token or address),
and ids in paths in one form (NFKC) before any route or check sees them. (The body cap, counted as bytes arrive,
is the edge's own: services/gateway/edge.py.)"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from shared.validation import nfkc_path


@dataclass
class TokenBuckets:
    """`rate` requests a second on average, bursts up to `burst`; the clock is passed in for tests."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    overrides: dict[str, tuple[float, float]] = field(default_factory=dict)  # caller → (rate, burst)
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key → (tokens, at)

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds to wait before retrying."""
        now = self.clock()
        rate, burst = self.overrides.get(key, (self.rate, self.burst))
        tokens, at = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:  # forget the idle ones rather than grow without bound
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < self.burst / self.rate}
        return (1 - tokens) / rate


def retry_after(wait: float) -> str:
    """The Retry-After header: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))


class NormalisedPaths:
    """ASGI middleware, outermost: the path's segments NFKC-normalised (shared.validation.nfkc_path), as ids in
    bodies are (shared.validation.Id), so /v1/summons/ｓ-１/report is /v1/summons/s-1/report to every route, and the
    edge's checks (which paths need a token) see the path the router will."""

    def __init__(self, app: Callable):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket") and not scope["path"].isascii():
            path = nfkc_path(scope["path"])
            if path != scope["path"]:
                scope = {**scope, "path": path, "raw_path": quote(path).encode("ascii")}
        await self.app(scope, receive, send)
