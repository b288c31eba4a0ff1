"""Group commit for blow requests: many concurrent 吹哨 share one transaction.

Requests are checked at once (a refusal is answered straight away and changes nothing) and queued;
one writer task takes whatever is queued (up to `max_batch`, lingering `linger_s` after the first
so that a burst travels together), settles the Idempotency-Keys, writes every whistle, key and
outbox row with set-based SQL, commits, hands the relay the rows, then answers every request of the batch.

Failures: a transient fault (database gone) answers the whole batch 503, nothing written; any other
error (a bug, a row the database refuses) retries the batch one request at a time, each under its
own savepoint, so only the request at fault gets its 503.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
import structlog

from services.intake import blows, store
from services.intake.domain import Category
from shared import telemetry
from shared.contracts import Command, Reply, WhistleBlown
from shared.db import Queued, write_outbox
from shared.ids import utcnow
from shared.runtime import EXPIRED, TRANSIENT

log = structlog.get_logger("intake.batcher")

UNAVAILABLE = Reply.refuse(503, "unavailable", "intake could not save the whistle; retry / 暂时无法受理，请重试")


class Relay(Protocol):
    """What the batcher needs of the outbox relay (`shared.runtime.relay.OutboxRelay`)."""

    leading: bool

    def handoff(self, rows: list[Queued]) -> None: ...


@dataclass
class _Waiting:
    blow: blows.Blow
    answer: asyncio.Future[Reply] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class BlowBatcher:
    """Queue blow requests and write them in batches; `blow` is the request handler."""

    def __init__(self, catalogue: dict[str, Category], *, max_batch: int = 500, linger_s: float = 0.0015):
        self.catalogue = catalogue
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._queue: list[_Waiting] = []
        self._queued = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._relay: Relay | None = None
        self._writer: asyncio.Task | None = None
        self._stopping = False

    def start(self, pool: asyncpg.Pool, relay: Relay) -> None:
        """Begin writing: each commit that queued events hands `relay` its rows."""
        self._pool, self._relay = pool, relay
        self._writer = asyncio.create_task(self._write_forever(), name="intake-blow-writer")

    async def stop(self) -> None:
        """Write and answer what is queued, then stop the writer."""
        self._stopping = True
        self._queued.set()
        if self._writer:
            await self._writer

    async def blow(self, cmd: Command) -> Reply:
        """Raise a whistle (吹哨): 201 once committed, a replay or a 409 for a used Idempotency-Key."""
        if cmd.expires_at is not None and utcnow() > cmd.expires_at:
            return EXPIRED  # the gateway has answered 504: a whistle raised now would be a surprise
        checked = blows.check(cmd, self.catalogue, utcnow())
        if isinstance(checked, Reply):
            return checked
        return await self.submit(checked)

    async def submit(self, blow: blows.Blow) -> Reply:
        """Queue a checked blow for the next batch; its reply once that batch has committed."""
        waiting = _Waiting(blow)
        self._queue.append(waiting)
        self._queued.set()
        return await waiting.answer

    async def _write_forever(self) -> None:
        while True:
            await self._queued.wait()
            if not self._queue:
                if self._stopping:
                    return
                self._queued.clear()
                continue
            if len(self._queue) < self.max_batch and not self._stopping:
                await asyncio.sleep(self.linger_s)  # a burst's other requests are on their way
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            if not self._queue:
                self._queued.clear()
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                _answer_all(batch, UNAVAILABLE)
                raise
            except Exception:  # a bug here must not stop the writer: every later blow would hang
                log.exception("blow.writer_failed", size=len(batch))
                _answer_all(batch, UNAVAILABLE)

    async def _write(self, batch: list[_Waiting]) -> None:
        started = time.perf_counter()
        queued: list[Queued] = []
        try:
            replies = await self._commit([w.blow for w in batch], queued)
        except TRANSIENT as exc:
            log.warning("blow.batch_unavailable", size=len(batch), error=repr(exc))
            replies, queued = [UNAVAILABLE] * len(batch), []
        except Exception:
            log.exception("blow.batch_failed", size=len(batch))
            queued = []
            replies = await self._commit_one_by_one([w.blow for w in batch], queued)
        created = [w.blow.whistle for w, r in zip(batch, replies, strict=True) if r.ok and not r.data.get("replayed")]
        if created:
            assert self._relay is not None
            self._relay.handoff(queued)
            telemetry.EVENTS_EMITTED.labels("intake", WhistleBlown.SUBJECT).inc(len(created))
        for w in created:
            telemetry.WHISTLES.labels(w.source.value, w.category, w.tier.value).inc()
        for w, reply in zip(batch, replies, strict=True):
            _answer_all([w], reply)
        log.info("blow.batch", size=len(batch), ms=round((time.perf_counter() - started) * 1e3, 2),
                 created=len(created),
                 replayed=sum(1 for r in replies if r.ok and r.data.get("replayed")),
                 refused=sum(1 for r in replies if not r.ok))

    async def _commit(self, batch: list[blows.Blow], queued: list[Queued]) -> list[Reply]:
        """One transaction; `queued` gets its outbox rows (the relay's once it has committed)."""
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._save(conn, batch, queued)

    async def _commit_one_by_one(self, batch: list[blows.Blow], queued: list[Queued]) -> list[Reply]:
        """After a batch failed for a reason other than the database: each request under its own savepoint."""
        assert self._pool is not None
        replies: list[Reply] = []
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                for b in batch:
                    try:
                        rows: list[Queued] = []
                        async with conn.transaction():
                            replies += await self._save(conn, [b], rows)
                        queued += rows  # only once its savepoint stands
                    except TRANSIENT:
                        raise
                    except Exception:
                        log.exception("blow.failed", whistle_id=str(b.whistle.whistle_id))
                        replies.append(UNAVAILABLE)
        except TRANSIENT as exc:
            log.warning("blow.batch_unavailable", size=len(batch), error=repr(exc))
            queued.clear()
            return [UNAVAILABLE] * len(batch)
        return replies

    async def _save(self, conn: asyncpg.Connection, batch: list[blows.Blow], queued: list[Queued]) -> list[Reply]:
        """Claim the keys, then write the new whistles and their events; the replies in batch order."""
        firsts = blows.first_uses(batch)
        claimed = await store.claim_idempotency(conn, firsts, utcnow())
        known = await store.seen_idempotency(conn, [b.key for b in firsts if b.key not in claimed])
        settled = blows.settle(batch, known)
        new = [s.blow for s in settled if s.new]
        await store.save_whistles(conn, [(b.whistle, b.raised.reporter) for b in new])
        assert self._relay is not None
        queued += await write_outbox(conn, [b.whistle for b in new], notify=not self._relay.leading)
        return [s.reply for s in settled]


def _answer_all(batch: list[_Waiting], reply: Reply) -> None:
    for w in batch:
        if not w.answer.done():  # a request is answered once; its caller may have gone meanwhile
            w.answer.set_result(reply)
