"""The outbox relay: publishes committed outbox rows to JetStream with Nats-Msg-Id, then deletes them."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import nats
import structlog
from nats.aio.msg import Msg

from shared import telemetry
from shared.ids import utcnow

log = structlog.get_logger("relay")


class PublishRefused(RuntimeError):
    """JetStream did not store a message (no stream for the subject, a limit, an error)."""


class PipelinedPublisher:
    """JetStream publishes pipelined over core NATS: one reply subject per message, one subscription
    counting the acknowledgements. Does what `publish_async` + `gather` did at about half the CPU
    per message (no future, callback and ack object per message); any error fails the whole batch,
    which the relay then retries (Nats-Msg-Id makes the retry harmless)."""

    def __init__(self, nc: nats.NATS):
        self._nc = nc
        self._prefix = ""
        self._tag = ""
        self._batches = 0
        self._left = 0
        self._errors: list[str] = []
        self._done = asyncio.Event()
        self.duplicates = 0  # messages JetStream had already stored (same Nats-Msg-Id in its window)

    async def publish(self, messages: list[tuple[str, bytes, dict[str, str]]], timeout: float) -> None:
        if not self._prefix:
            self._prefix = self._nc.new_inbox()
            await self._nc.subscribe(f"{self._prefix}.>", cb=self._on_ack)
        self._batches += 1
        self._tag = f"{self._prefix}.{self._batches}."  # a late ack of an earlier batch is ignored
        self._left, self._errors = len(messages), []
        self._done.clear()
        for i, (subject, body, headers) in enumerate(messages):
            await self._nc.publish(subject, body, reply=f"{self._tag}{i}", headers=headers)
        await self._nc.flush(timeout=max(1, int(timeout)))
        await asyncio.wait_for(self._done.wait(), timeout)
        if self._errors:
            raise PublishRefused(f"{len(self._errors)} of {len(messages)} refused, e.g. {self._errors[0]}")

    async def _on_ack(self, msg: Msg) -> None:
        if not msg.subject.startswith(self._tag):
            return
        status = (msg.headers or {}).get("Status")
        if status or b'"error"' in msg.data:  # 503: no stream listens; {"error": …}: refused
            self._errors.append(status and f"status {status}" or msg.data[:300].decode(errors="replace"))
        elif b'"duplicate":true' in msg.data:
            self.duplicates += 1
        self._left -= 1
        if self._left <= 0:
            self._done.set()


class OutboxRelay:
    """One relay per service schema; a Postgres advisory lock keeps it single among replicas."""

    def __init__(self, pool: asyncpg.Pool, nc: nats.NATS, service: str, *, batch: int = 1000):
        self._pool = pool
        self._publisher = PipelinedPublisher(nc)
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
            # the lag: how long the oldest row waited (rows come in seq order); 0 once drained
            telemetry.OUTBOX_LAG.labels(self._service).set((utcnow() - rows[0]["created_at"]).total_seconds())
            try:
                await self._publisher.publish(
                    [(r["subject"], bytes(r["body"]), {"Nats-Msg-Id": r["msg_id"], **r["headers"]}) for r in rows],
                    timeout=15,
                )
            except Exception as exc:  # NATS unavailable: keep the rows, retry after a pause
                log.warning("relay.publish_failed", service=self._service, error=repr(exc), pending=len(rows))
                telemetry.RELAY_ERRORS.labels(self._service).inc()
                await asyncio.sleep(1.0)
                return 0
            # by id, not by range: a row with a lower seq may commit after this read
            await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows])
            telemetry.RELAYED.labels(self._service).inc(len(rows))
            return len(rows)
