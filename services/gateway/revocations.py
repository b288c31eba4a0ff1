"""The revoked bearer tokens, as every gateway replica keeps them in memory.

Routing owns the list (services/routing/tokens.py, in Postgres): single tokens by their jti, all of a
responder's tokens issued before a "not before", and the deactivated responders, whose tokens and
console sessions all stop working. Each gateway loads the list at start, loads it again whenever
routing's core-NATS notice says it changed (within milliseconds of the commit, on every replica at
once), and every `refresh_s` whatever the notices say (one lost while NATS was away). A revocation
made through this gateway is applied here as soon as routing confirms it, so the caller's very next
request is refused whatever the notice's timing.

Until the first load the gateway cannot tell a revoked token from a good one: the edge answers 503
and /healthz is not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from shared import subjects
from shared.auth import Claims
from shared.contracts import Actor

log = structlog.get_logger("gateway.revocations")
GATEWAY = Actor(role="system", id="gateway")
RETRY_S = 0.5  # how soon a failed load is tried again


class Revocations:
    """What is revoked, by jti, by responder ("not before", seconds since the epoch) and by deactivation."""

    def __init__(self) -> None:
        self.jtis: frozenset[str] = frozenset()
        self.not_before: dict[str, float] = {}
        self.inactive: frozenset[str] = frozenset()
        self.loaded = False
        self.loaded_at = 0.0  # time.monotonic() of the last load
        # changes confirmed here (monotonic time, kind, value), kept over any list read before them
        self._local: list[tuple[float, str, object]] = []

    @classmethod
    def empty(cls) -> Revocations:
        """A list known to be empty (tests, and a gateway told to trust every well-signed token)."""
        revocations = cls()
        revocations.loaded = True
        return revocations

    def revoked(self, claims: Claims) -> bool:
        """Whether a well-signed, unexpired token may no longer be used."""
        if claims.jti in self.jtis:
            return True
        return claims.role == "responder" and self.subject_revoked(claims.sub, claims.iat)

    def subject_revoked(self, responder_id: str, issued_at: float) -> bool:
        """Whether a responder's credential issued at `issued_at` (a token, a console session) is dead:
        the responder is deactivated, or its tokens were revoked at or after that moment."""
        if responder_id in self.inactive:
            return True
        floor = self.not_before.get(responder_id)
        return floor is not None and issued_at <= floor

    def session_revoked(self, actor: Actor, issued_at: float) -> bool:
        return actor.role == "responder" and self.subject_revoked(actor.id, issued_at)

    # --- changes ------------------------------------------------------------------------------------

    def replace(self, data: dict, asked_at: float) -> None:
        """The list as routing answered it, asked for at `asked_at` (monotonic); changes confirmed here
        after that moment are kept over it (the answer may have been read before they committed)."""
        jtis = set(data.get("jtis") or ())
        not_before = {str(k): float(v) for k, v in (data.get("not_before") or {}).items()}
        inactive = set(data.get("inactive") or ())
        self._local = [change for change in self._local if change[0] >= asked_at]
        for _, kind, value in self._local:
            _apply(kind, value, jtis, not_before, inactive)
        self.jtis, self.not_before, self.inactive = frozenset(jtis), not_before, frozenset(inactive)
        self.loaded, self.loaded_at = True, time.monotonic()

    def apply(self, kind: str, value: object) -> None:
        """A change routing has just confirmed to this gateway: "jti" (str), "not_before" ((id, seconds))
        or "active" ((id, bool))."""
        self._local.append((time.monotonic(), kind, value))
        jtis, not_before, inactive = set(self.jtis), dict(self.not_before), set(self.inactive)
        _apply(kind, value, jtis, not_before, inactive)
        self.jtis, self.not_before, self.inactive = frozenset(jtis), not_before, frozenset(inactive)


def _apply(kind: str, value, jtis: set, not_before: dict, inactive: set) -> None:
    if kind == "jti":
        jtis.add(value)
    elif kind == "not_before":
        responder_id, floor = value
        not_before[responder_id] = max(floor, not_before.get(responder_id, floor))
    elif kind == "active":
        responder_id, active = value
        (inactive.discard if active else inactive.add)(responder_id)


class RevocationWatch:
    """Keeps `revocations` up to date from routing: at start, on each notice, every `refresh_s`."""

    def __init__(self, bus, revocations: Revocations, refresh_s: float):
        self.bus = bus
        self.revocations = revocations
        self.refresh_s = refresh_s
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._sub = None
        self._failing = False

    async def start(self) -> None:
        # subscribed before the first load: a change committed meanwhile is loaded again, never missed
        self._sub = await self.bus.nc.subscribe(subjects.ROUTING_TOKENS_CHANGED, cb=self._on_notice)
        self.bus.reconnected.append(self._on_reconnected)
        self._task = asyncio.create_task(self._run(), name="gateway-revocations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._on_reconnected in self.bus.reconnected:
            self.bus.reconnected.remove(self._on_reconnected)

    async def _on_notice(self, _msg) -> None:
        self._changed.set()

    async def _on_reconnected(self) -> None:
        self._changed.set()  # notices published while the connection was away are lost: read the list again

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            ok = await self.load()
            wait = self.refresh_s if ok else RETRY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)

    async def load(self) -> bool:
        """Read the list from routing once; False (the old list kept) if routing did not answer."""
        asked_at = time.monotonic()
        try:
            reply = await self.bus.ask(subjects.QRY_ROUTING_TOKEN_REVOCATIONS, GATEWAY)
        except Exception as exc:  # noqa: BLE001 — NATS away, a closed connection: keep the list, try again
            reply, error = None, repr(exc)
        else:
            error = None if reply.ok else f"{reply.refusal.status} {reply.refusal.code}"
        if error is not None:
            if not self._failing:
                log.warning("revocations.load_failed", error=error, loaded=self.revocations.loaded)
            self._failing = True
            return False
        self.revocations.replace(reply.data, asked_at)
        if self._failing:
            log.info("revocations.loaded", jtis=len(self.revocations.jtis), inactive=len(self.revocations.inactive))
        self._failing = False
        return True
