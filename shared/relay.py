"""The outbox relay: publishes committed outbox rows to JetStream with Nats-Msg-Id, then deletes them."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog
from nats.js import JetStreamContext

from shared import telemetry

log = structlog.get_logger("relay")


class OutboxRelay:
    """One relay per service schema; a Postgres advisory lock keeps it single among replicas."""

    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext, service: str, *, batch: int = 1000):
        self._pool = pool
        self._js = js
        self._service = service
        self._batch = batch
        self._wake = asyncio.Event()
        self._stopped = False

    def wake(self) -> None:
        """Nudge the relay after a commit in this process (others arrive through NOTIFY)."""
        self._wake.set()

    async def run(self) -> None:
        listener = await self._pool.acquire()
        channel, on_notify = f"{self._service}_outbox", lambda *_: self._wake.set()
        try:
            await listener.add_listener(channel, on_notify)
            while not await listener.fetchval("SELECT pg_try_advisory_lock(hashtext(current_schema() || '.relay'))"):
                await asyncio.sleep(2.0)
            while not self._stopped:
                published = await self._drain_once()
                if published == 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=0.5)
        finally:
            with contextlib.suppress(Exception):
                await listener.execute("SELECT pg_advisory_unlock_all()")
                await listener.remove_listener(channel, on_notify)
            await self._pool.release(listener)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def _drain_once(self) -> int:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT seq, subject, headers, body, msg_id, created_at FROM outbox ORDER BY seq LIMIT $1",
                self._batch,
            )
            if not rows:
                telemetry.OUTBOX_LAG.labels(self._service).set(0)
                return 0
            try:
                futures = [
                    await self._js.publish_async(
                        r["subject"], bytes(r["body"]), headers={"Nats-Msg-Id": r["msg_id"], **r["headers"]}
                    )
                    for r in rows
                ]
                await asyncio.wait_for(asyncio.gather(*futures), timeout=15)
            except Exception as exc:  # NATS unavailable: keep the rows, retry after a pause
                log.warning("relay.publish_failed", service=self._service, error=repr(exc), pending=len(rows))
                telemetry.RELAY_ERRORS.labels(self._service).inc()
                await asyncio.sleep(1.0)
                return 0
            # by id, not by range: a row with a lower seq may commit after this read
            await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows])
            oldest = await conn.fetchval("SELECT extract(epoch FROM now() - min(created_at)) FROM outbox")
            telemetry.OUTBOX_LAG.labels(self._service).set(float(oldest or 0))
            telemetry.RELAYED.labels(self._service).inc(len(rows))
            return len(rows)
