"""The gateway's side of request/reply: one NATS connection, commands out, replies in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import nats
import structlog
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from shared import subjects
from shared.contracts import Actor, Reply
from shared.ids import utcnow
from shared.settings import nats_servers
from shared.signing import Signer

log = structlog.get_logger("gateway.bus")


def unstorable(value: Any, path: str = "") -> str | None:
    """Where in a JSON value the first string Postgres cannot store is (a NUL, half a surrogate pair), or None."""
    if isinstance(value, str):
        return path if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and unstorable(key) is not None:
            return where
        if (found := unstorable(item, where)) is not None:
            return found
    return None


class Bus:
    def __init__(self, url: str, timeout: float, signer: Signer | None = None):
        self.url = url
        self.timeout = timeout
        # signs every command and query: owners trust no actor without it (the gateway refuses to start
        # without a key; tests with a fake owner may leave it out)
        self.signer = signer
        self.nc: nats.NATS | None = None
        # awaited each time the connection comes back, its subscriptions renewed (what was published to
        # them meanwhile is lost: core NATS keeps nothing)
        self.reconnected: list[Callable[[], Awaitable[None]]] = []

    async def connect(self) -> None:
        self.nc = await nats.connect(nats_servers(self.url), name="gateway", max_reconnect_attempts=-1,
                                     reconnected_cb=self._reconnected)

    async def _reconnected(self) -> None:
        for callback in list(self.reconnected):
            try:
                await callback()
            except Exception as exc:  # one listener's failure must not stop the others, nor the client
                log.warning("bus.reconnected_callback_failed", error=repr(exc))

    async def close(self) -> None:
        if self.nc:
            await self.nc.drain()

    async def ask(self, subject: str, actor: Actor, payload: dict[str, Any] | None = None, *,
                  idempotency_key: str | None = None, expires_at: datetime | None = None) -> Reply:
        """Send a command or query to the owning service; 503 / 504 when it cannot answer."""
        assert self.nc is not None
        message: dict[str, Any] = {"actor": actor.model_dump(), "payload": payload or {}}
        if idempotency_key is not None:
            message["idempotency_key"] = idempotency_key
        if expires_at is not None:
            message["expires_at"] = expires_at.isoformat()
        if self.signer is not None:
            self.signer.sign(subject, message)
        text = json.dumps(message, ensure_ascii=False)  # UTF-8: escaped Chinese would be twice the bytes
        try:
            body = text.encode()
        except UnicodeEncodeError:  # half a surrogate pair, in free-form JSON (typed fields refuse it)
            body = None
        # Postgres stores neither a NUL nor half a surrogate pair; caught here for every owner at once
        where = unstorable(payload or {}) if body is None or "\\u0000" in text else None
        if body is None or where is not None:
            return Reply.refuse(422, "invalid", "text may not hold NUL (\\u0000) or half a surrogate pair"
                                " / 文本不能包含空字符或不成对的代理字符", where)
        if len(body) > self.nc.max_payload:  # what the client sent, once escaped, is more than one message holds
            return Reply.refuse(413, "too_large", "the request is too large to forward / 请求过大")
        try:
            msg = await self.nc.request(subject, body, timeout=self.timeout)
        except NoRespondersError:
            return Reply.refuse(503, "service_unavailable", f"no service answers {subject} / 服务暂不可用")
        except (NatsTimeout, asyncio.TimeoutError):
            return Reply.refuse(504, "service_timeout", f"{subject} did not answer in time / 服务响应超时")
        return Reply.model_validate_json(msg.data)

    async def command(self, subject: str, actor: Actor, payload: dict[str, Any] | None = None, *,
                      idempotency_key: str | None = None) -> Reply:
        """A command: the owner carries it out only while this gateway still waits for the answer, and a
        retry with the same idempotency key gets the first answer back."""
        return await self.ask(subject, actor, payload, idempotency_key=idempotency_key,
                              expires_at=utcnow() + timedelta(seconds=self.timeout))

    async def health(self) -> dict[str, dict]:
        """Readiness of every service, asked in parallel: {"ready", "problems": {component: why}}."""
        assert self.nc is not None

        async def one(name: str) -> dict:
            try:
                msg = await self.nc.request(f"{subjects.HEALTH}.{name}", b"{}", timeout=1.0)
                state = json.loads(msg.data)
                return {"ready": bool(state.get("ready")), "problems": state.get("problems") or {}}
            except NoRespondersError:
                return {"ready": False, "problems": {"service": {"reason": "not running / 未运行"}}}
            except Exception as exc:
                return {"ready": False, "problems": {"service": {"reason": f"no answer / 无应答: {exc!r}"}}}

        results = await asyncio.gather(*(one(n) for n in subjects.SERVICES))
        return dict(zip(subjects.SERVICES, results, strict=True))
