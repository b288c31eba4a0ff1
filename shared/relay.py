"""The outbox relay: publishes committed outbox rows to JetStream with Nats-Msg-Id, then deletes them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

import asyncpg
import nats
import structlog
from nats.aio.msg import Msg

from shared import telemetry
from shared.db import Queued
from shared.ids import utcnow

log = structlog.get_logger("relay")
POLL_S = 0.5  # how often the table is read while rows come handed over (others' rows, retries)


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
        if not messages:
            return
        if not self._prefix:
            self._prefix = self._nc.new_inbox()
            await self._nc.subscribe(f"{self._prefix}.>", cb=self._on_ack)
        self._batches += 1
        self._tag = f"{self._prefix}.{self._batches}."  # a late ack of an earlier batch is ignored
        self._left, self._errors = len(messages), []
        self._done.clear()
        if self._nc.is_closed or self._nc.is_draining_pubs:
            raise nats.errors.ConnectionClosedError
        biggest = max(len(body) for _, body, _ in messages)
        if biggest > self._nc.max_payload:  # the server would drop the connection
            raise PublishRefused(f"a message of {biggest} bytes is over the server's {self._nc.max_payload}")
        await self._nc._send_command(b"".join(_hpub(m, f"{self._tag}{i}") for i, m in enumerate(messages)))
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
        elif b'"duplicate"' in msg.data:  # {…,"duplicate": true}
            self.duplicates += 1
        self._left -= 1
        if self._left <= 0:
            self._done.set()


def _hpub(message: tuple[str, bytes, dict[str, str]], reply: str) -> bytes:
    """One HPUB protocol command, as nats-py's `publish` makes it (nats.protocol.command.hpub_cmd)
    without its per-header regex and per-message writes: the batch goes in as one command. Measured
    here (py-spy, timers bench): `Client.publish` was 11% of escalation's CPU while arming."""
    subject, body, headers = message
    head = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    # a CR or LF inside a header, or a subject empty or with a blank, would break the protocol stream
    lines = len(headers) + 2
    if head.count("\n") != lines or head.count("\r") != lines or len(subject.split()) != 1:
        raise PublishRefused(f"cannot publish on {subject!r} with headers {headers!r}")
    hdr = head.encode()
    size = len(hdr) + len(body)
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (subject.encode(), reply.encode(), len(hdr), size, hdr, body)


class OutboxRelay:
    """One relay per service schema; a Postgres advisory lock keeps it single among replicas.

    The leader publishes what its own process commits straight from memory (`handoff`), then
    deletes those rows; it reads the table for the rest: rows another replica wrote (it NOTIFYs),
    rows left by a crash or a failed publish, every `POLL_S` and whenever nothing is handed over.
    A row read from the table just before its hand-off arrives is published once: the last reads'
    seqs are remembered (and should one slip through, its Nats-Msg-Id makes the copy a no-op).
    """

    def __init__(self, pool: asyncpg.Pool, nc: nats.NATS, service: str, *, batch: int = 1000):
        self._pool = pool
        self._publisher = PipelinedPublisher(nc)
        self._service = service
        self._batch = batch
        self._wake = asyncio.Event()
        self._stopped = False
        self._handed: deque[Queued] = deque()
        self._read: deque[set[int]] = deque(maxlen=4)  # seqs the last table reads published
        self._notified = True  # read the table at the next turn (start, NOTIFY)
        self._published = asyncio.Event()  # handed rows went out (a consumer may be waiting for room)
        self.leading = False  # this process's relay holds the lock: its commits hand it their rows

    def wake(self) -> None:
        """Nudge the relay after a commit in this process (others arrive through NOTIFY)."""
        self._wake.set()

    def handoff(self, rows: list[Queued]) -> None:
        """Rows this process has just committed: published from memory, not read back."""
        if rows and self.leading:
            if self._read:
                rows = [r for r in rows if not any(r.seq in seqs for seqs in self._read)]
            self._handed.extend(rows)
        self._wake.set()

    async def room(self, most: int) -> None:
        """Wait while more than `most` handed rows wait to go out: consumers must not outrun the
        relay, whose backlog is held in memory (measured: 1,000,000 clocks armed by overlapping
        batches left escalation at 361 MB without this, against 77 MB before the overlap)."""
        while self.leading and len(self._handed) > most:
            self._published.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), timeout=1.0)

    async def run(self) -> None:
        listener = await self._pool.acquire()
        channel = f"{self._service}_outbox"

        def on_notify(*_: object) -> None:
            self._notified = True
            self._wake.set()

        try:
            await listener.add_listener(channel, on_notify)
            while not await listener.fetchval("SELECT pg_try_advisory_lock(hashtext(current_schema() || '.relay'))"):
                await asyncio.sleep(2.0)
            self.leading = True
            last_read = 0.0
            while not self._stopped:
                published = await self._publish_handed() if self._handed else 0
                if published == 0 or self._notified or time.monotonic() - last_read > POLL_S:
                    self._notified, last_read = False, time.monotonic()
                    published += await self._drain_once()
                if published == 0 and not self._handed:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=POLL_S)
        finally:
            self.leading = False
            self._handed.clear()  # still in the table: whoever leads next reads them
            self._published.set()
            with contextlib.suppress(Exception):
                await listener.execute("SELECT pg_advisory_unlock_all()")
                await listener.remove_listener(channel, on_notify)
            await self._pool.release(listener)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def _publish_handed(self) -> int:
        rows = [self._handed.popleft() for _ in range(min(self._batch, len(self._handed)))]
        self._published.set()
        if not await self._publish([(r.subject, r.body, r.headers) for r in rows]):
            return 0  # left in the table: a later read publishes them
        async with self._pool.acquire() as conn:
            await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", [r.seq for r in rows])
        telemetry.RELAYED.labels(self._service).inc(len(rows))
        return len(rows)

    async def _drain_once(self) -> int:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT seq, subject, headers, body, msg_id, created_at FROM outbox ORDER BY seq LIMIT $1",
                self._batch,
            )
            if self._handed:  # already on their way from memory
                handed = {r.seq for r in self._handed}
                rows = [r for r in rows if r["seq"] not in handed]
            if not rows:
                telemetry.OUTBOX_LAG.labels(self._service).set(0)
                return 0
            # the lag: how long the oldest row waited (rows come in seq order); 0 once drained
            telemetry.OUTBOX_LAG.labels(self._service).set((utcnow() - rows[0]["created_at"]).total_seconds())
            self._read.append({r["seq"] for r in rows})
            if not await self._publish(
                [(r["subject"], bytes(r["body"]), {"Nats-Msg-Id": r["msg_id"], **r["headers"]}) for r in rows]
            ):
                return 0
            # by id, not by range: a row with a lower seq may commit after this read
            await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows])
            telemetry.RELAYED.labels(self._service).inc(len(rows))
            return len(rows)

    async def _publish(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> bool:
        try:
            await self._publisher.publish(messages, timeout=15)
            return True
        except Exception as exc:  # NATS unavailable: keep the rows, retry after a pause
            log.warning("relay.publish_failed", service=self._service, error=repr(exc), pending=len(messages))
            telemetry.RELAY_ERRORS.labels(self._service).inc()
            await asyncio.sleep(1.0)
            return False
