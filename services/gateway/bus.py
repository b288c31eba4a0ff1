"""The gateway's side of request/reply: one NATS connection, commands out, replies in."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from shared import subjects
from shared.contracts import Actor, Reply


class Bus:
    def __init__(self, url: str, timeout: float):
        self.url = url
        self.timeout = timeout
        self.nc: nats.NATS | None = None

    async def connect(self) -> None:
        self.nc = await nats.connect(self.url, name="gateway", max_reconnect_attempts=-1)

    async def close(self) -> None:
        if self.nc:
            await self.nc.drain()

    async def ask(self, subject: str, actor: Actor, payload: dict[str, Any] | None = None) -> Reply:
        """Send a command or query to the owning service; 503 / 504 when it cannot answer."""
        assert self.nc is not None
        body = json.dumps({"actor": actor.model_dump(), "payload": payload or {}}).encode()
        try:
            msg = await self.nc.request(subject, body, timeout=self.timeout)
        except NoRespondersError:
            return Reply.refuse(503, "service_unavailable", f"no service answers {subject} / 服务暂不可用")
        except (NatsTimeout, asyncio.TimeoutError):
            return Reply.refuse(504, "service_timeout", f"{subject} did not answer in time / 服务响应超时")
        return Reply.model_validate_json(msg.data)

    async def health(self) -> dict[str, bool]:
        """Readiness of every service, asked in parallel."""
        assert self.nc is not None

        async def one(name: str) -> bool:
            try:
                msg = await self.nc.request(f"{subjects.HEALTH}.{name}", b"{}", timeout=1.0)
                return bool(json.loads(msg.data).get("ready"))
            except Exception:
                return False

        results = await asyncio.gather(*(one(n) for n in subjects.SERVICES))
        return dict(zip(subjects.SERVICES, results, strict=True))
