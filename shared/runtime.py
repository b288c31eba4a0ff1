"""What every service runs on: settings, pool, migrations, broker, consumers, relay, telemetry.

A service's `app.py` builds a `ServiceRuntime`, registers its handlers on it and calls `run()`.
Handlers stay thin: they get a connection inside an open transaction and return the messages
to write to the outbox; this module owns acks, the inbox, dead letters and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import nats
import structlog
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from shared import heap, priority, subjects, telemetry
from shared.contracts import Command, Event, Reply, parse_event
from shared.db import (
    SHARED_MIGRATIONS,
    OutboxMessage,
    Queued,
    claim_inbox,
    claim_inbox_many,
    create_pool,
    migrate,
    write_outbox,
)
from shared.ids import utcnow
from shared.pull import PullBatches
from shared.relay import OutboxRelay
from shared.settings import ServiceSettings
from shared.streams import consumer_config, ensure_streams

T = TypeVar("T")
Effects = list[Event | OutboxMessage]
EventHandler = Callable[[asyncpg.Connection, Any, datetime], Awaitable[Effects]]
BatchHandler = Callable[[asyncpg.Connection, list[Any], datetime], Awaitable[Effects]]
Prepare = Callable[[asyncpg.Pool, list[Any]], Awaitable[list[Any]]]
RequestHandler = Callable[[asyncpg.Connection, Command, datetime], Awaitable[tuple[Reply, Effects]]]
QueryHandler = Callable[[asyncpg.Pool, Command], Awaitable[Reply]]

# handed outbox rows (two per new clock) the relay may have waiting before a consumer whose batches
# overlap fetches more; others never wait (clock firings must not queue behind a burst of arming:
# measured, making them wait too put the timers bench's lateness p99 at 0.59 and 1.21 s)
RELAY_BACKLOG = 4000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # release time of a message that names none

# Faults worth a retry: the database or the network, not our code or the message.
TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


class Poison(ValueError):
    """A message that can never be handled (malformed, unknown subject)."""


def parse_domain_event(m: Msg) -> Event:
    try:
        return parse_event(m.subject, m.data)
    except (ValidationError, ValueError) as exc:
        raise Poison(str(exc)) from exc


@dataclass(frozen=True)
class _Consumer:
    subject: str
    stream: str
    durable: str
    handle: EventHandler | BatchHandler
    parse: Callable[[Msg], Any]
    dedup: Callable[[Any], UUID | None]
    batch: bool = False
    concurrency: int = 1
    not_before: Callable[[Any], datetime | None] | None = None
    prepare: Prepare | None = None
    overlaps: Callable[[Any], bool] | None = None


class _Held:
    """Messages that came before their time, in a heap by release time, until a releaser takes them."""

    def __init__(self) -> None:
        self.heap: list[tuple[datetime, int, Msg, Any]] = []
        self.arrived = asyncio.Event()  # something was pushed (perhaps earlier than the heap's top)
        self._order = itertools.count()  # ties keep arrival order; messages are never compared

    def push(self, at: datetime, m: Msg, item: Any) -> None:
        heapq.heappush(self.heap, (at, next(self._order), m, item))
        self.arrived.set()

    def pop_ready(self, now: datetime, limit: int) -> list[tuple[Msg, Any]]:
        ready = []
        while self.heap and self.heap[0][0] <= now and len(ready) < limit:
            _, _, m, item = heapq.heappop(self.heap)
            ready.append((m, item))
        return ready


class ServiceRuntime:
    """The composition of one service process."""

    def __init__(self, name: str, settings: ServiceSettings, migrations: Path | None = None):
        self.name = name
        self.settings = settings
        self.migrations = [SHARED_MIGRATIONS] + ([migrations] if migrations else [])
        # FastStream logs per message at DEBUG (hidden); its errors reach stderr at WARNING and above
        fs_logger = logging.getLogger(f"faststream.{name}")
        fs_logger.setLevel(logging.WARNING)
        self.broker = NatsBroker(settings.nats_url, graceful_timeout=10.0, logger=fs_logger, log_level=logging.DEBUG)
        self.spec_broker = NatsBroker(settings.nats_url)  # documents JetStream consumers; never started
        self._consumers: list[_Consumer] = []
        self._stopping = False
        self.pool: asyncpg.Pool | None = None
        self.relay: OutboxRelay | None = None
        self.log = structlog.get_logger(name)
        self.ready = False
        self._nc: nats.NATS | None = None
        self._tasks: list[asyncio.Task] = []
        self._pulls: list[PullBatches] = []
        self._held: list[_Held] = []
        self._startup: list[Callable[[ServiceRuntime], Awaitable[None]]] = []
        self._periodic: list[tuple[float, Callable[[ServiceRuntime], Awaitable[None]]]] = []
        self.every(15.0, self._consumer_lag)
        self.broker.subscriber(f"{subjects.HEALTH}.{name}", include_in_schema=False)(self._health)

    # --- registration ------------------------------------------------------

    def on_events(
        self,
        subject: str,
        handle: EventHandler | BatchHandler,
        *,
        batch: bool = False,
        concurrency: int = 1,
        stream: str = subjects.EVENTS_STREAM,
        durable: str | None = None,
        parse: Callable[[Msg], Any] = parse_domain_event,
        dedup: Callable[[Any], UUID | None] = lambda e: e.event_id,
        not_before: Callable[[Any], datetime | None] | None = None,
        prepare: Prepare | None = None,
        overlaps: Callable[[Any], bool] | None = None,
        description: str = "",
    ) -> None:
        """Consume `subject` from `stream` with a durable pull consumer, batch by batch, in order.

        With `batch=True` the handler takes the list of a fetched batch's new messages (in stream
        order, redeliveries already dropped by the inbox) and does set-based SQL; should it fail,
        the batch is handled again one message at a time, so one bad message cannot sink the rest.

        `concurrency` > 1 runs that many fetch-and-handle loops on the same durable consumer, so one
        batch's Postgres round trips overlap another's CPU. Only for messages whose order does not
        matter (each handler locks what it changes, and stale messages are recognised).

        The pull loop is our own (nats-py): FastStream 0.7.8's batch subscriber, with the short
        collection timeout low latency needs, left delivered messages unhandled until their
        ack_wait ran out (measured here: 30 s stalls). FastStream still documents the subject.

        `not_before` gives a message's release time: one that arrives earlier is held (unacked) until
        then, and one more than `hold_max_s` early goes back to the server with that delay. Timers
        that JetStream fires a little ahead of their time are thus handled on time, never early.
        Fetching goes on while messages wait; `concurrency` releasers hand the due ones, in time
        order, to the handler.

        `prepare` (with `not_before`) runs on a batch as soon as it arrives, before it is held, and
        what it returns is what the handler gets: work that can be done ahead (reading, computing,
        serialising) is then out of the way when the messages fall due. Should it fail, the handler
        gets the messages as parsed.

        `overlaps` keeps one ordered fetch loop but lets batches overlap where order cannot matter:
        a batch whose every message it holds true for (a new summons, which nothing earlier can
        touch) is handled while earlier batches still are, up to `concurrency` at a time; any other
        batch first waits until every earlier one is done. One batch's Postgres round trips and
        commit then overlap the next one's CPU, and no message is handled before one it follows.
        """
        durable = durable or f"{self.name}-{subject.replace('.', '-').replace('>', 'all').replace('*', 'any')}"
        self._consumers.append(
            _Consumer(subject, stream, durable, handle, parse, dedup, batch, concurrency, not_before, prepare, overlaps))
        doc = description or (handle.__doc__ or "").strip()

        async def documented(body: Any) -> None:  # never called: the AsyncAPI entry only
            raise NotImplementedError

        self.spec_broker.subscriber(
            subject, stream=JStream(stream, declare=False), durable=durable, pull_sub=PullSub(batch=True),
            title=f"{self.name}:{subject}", description=doc,
        )(documented)

    def on_request(self, subject: str, handle: RequestHandler | QueryHandler, *, query: bool = False) -> None:
        """Answer a gateway request: commands get a transaction and an outbox; queries a pool."""

        async def on_message(body: dict) -> dict:
            started = time.perf_counter()
            reply = await self._answer(subject, handle, body, query)
            outcome = "ok" if reply.ok else "refused"
            telemetry.COMMANDS.labels(self.name, subject, outcome).inc()
            # one canonical line per command; queries only at debug level
            (self.log.debug if query else self.log.info)(
                "request", subject=subject, actor=str((body or {}).get("actor", {}).get("id", "?")), outcome=outcome,
                code=reply.refusal.code if reply.refusal else None, ms=round((time.perf_counter() - started) * 1e3, 2),
            )
            return reply.model_dump(mode="json")

        # several at once: a slow query must not queue every other caller behind it (commands lock
        # the rows they change, so they may overlap too)
        self.broker.subscriber(
            subject, queue=self.name, max_workers=self.settings.request_workers,
            title=f"{self.name}:{subject}", description=(handle.__doc__ or "").strip(),
        )(on_message)

    def documents(self, *event_types: type[Event]) -> None:
        """Declare, for the AsyncAPI document, the events this service emits (the relay sends them)."""
        for cls in event_types:
            self.spec_broker.publisher(
                cls.SUBJECT, stream=JStream(subjects.EVENTS_STREAM, declare=False), schema=cls,
                title=f"{self.name}:{cls.SUBJECT}", description=(cls.__doc__ or "").strip(),
            )

    def on_startup(self, fn: Callable[[ServiceRuntime], Awaitable[None]]) -> None:
        self._startup.append(fn)

    def every(self, seconds: float, fn: Callable[[ServiceRuntime], Awaitable[None]]) -> None:
        """Run `fn` periodically while the service runs (gauges, housekeeping); errors are logged."""
        self._periodic.append((seconds, fn))

    async def _periodically(self, seconds: float, fn: Callable[[ServiceRuntime], Awaitable[None]]) -> None:
        while not self._stopping:
            try:
                await fn(self)
            except Exception as exc:
                self.log.warning("periodic.failed", task=getattr(fn, "__name__", "?"), error=repr(exc))
            for _ in range(int(seconds * 10)):
                if self._stopping:
                    return
                await asyncio.sleep(0.1)

    async def _consumer_lag(self, _: ServiceRuntime) -> None:
        js = self.nc.jetstream()
        for c in self._consumers:
            info = await js.consumer_info(c.stream, c.durable)
            telemetry.CONSUMER_PENDING.labels(self.name, c.durable).set(info.num_pending or 0)
            telemetry.CONSUMER_ACK_PENDING.labels(self.name, c.durable).set(info.num_ack_pending or 0)

    # --- running -----------------------------------------------------------

    async def run(self) -> None:
        """Start everything, serve until SIGTERM / SIGINT, then stop cleanly."""
        telemetry.configure_logging(self.name, self.settings.log_json)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = await telemetry.serve_telemetry(self.settings.telemetry_port, lambda: self.ready)
        await self.start()
        self.log.info("service.ready", telemetry_port=self.settings.telemetry_port)
        await stop.wait()
        self.log.info("service.stopping")
        await self.stop()
        if server:
            server.close()

    async def start(self) -> None:
        priority.lower(0, self.settings.nice)
        self.pool = await create_pool(self.settings.database_url, self.name, nice=self.settings.nice)
        applied = await migrate(self.pool, self.migrations)
        if applied:
            self.log.info("migrations.applied", files=applied)
        self._nc = await nats.connect(self.settings.nats_url, name=f"{self.name}-relay", max_reconnect_attempts=-1)
        js = self._nc.jetstream(publish_async_max_pending=10_000)
        await ensure_streams(js, self.settings.stream_replicas)
        self.relay = OutboxRelay(self.pool, self._nc, self.name)
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-relay"))
        for fn in self._startup:
            await fn(self)
        for consumer in self._consumers:
            try:  # an existing durable keeps its configuration (JetStream cannot change most of it)
                await js.consumer_info(consumer.stream, consumer.durable)
            except NotFoundError:
                await js.add_consumer(consumer.stream, consumer_config(
                    consumer.durable, max_deliver=self.settings.max_deliver, ack_wait_s=self.settings.ack_wait_s,
                    filter_subject=consumer.subject,
                ))
            held = _Held() if consumer.not_before is not None else None
            if held is not None:
                self._held.append(held)
            loops = 1 if consumer.overlaps is not None else consumer.concurrency
            for _ in range(loops):  # each loop its own pull requests on the durable
                pull = PullBatches(self._nc, consumer.stream, consumer.durable, batch=self.settings.batch_size)
                await pull.start()
                self._pulls.append(pull)
                self._tasks.append(asyncio.create_task(self._consume(consumer, pull, held), name=consumer.durable))
                if held is not None:
                    self._tasks.append(asyncio.create_task(self._release(consumer, held), name=f"{consumer.durable}-hold"))
        for seconds, fn in self._periodic:
            self._tasks.append(asyncio.create_task(self._periodically(seconds, fn)))
        await self.broker.start()
        heap.settle()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        self._stopping = True
        with contextlib.suppress(Exception):
            await self.broker.stop()
        if self.relay:
            self.relay.stop()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, timeout=5)
        for pull in self._pulls:  # a message delivered after the last batch would hold drain() up
            with contextlib.suppress(Exception):
                await pull.stop()
        now = utcnow()
        for held in self._held:  # back to the server for the next process, each due at its time
            for at, _, m, _ in held.heap:
                with contextlib.suppress(Exception):
                    await m.nak(delay=max((at - now).total_seconds(), 0.0))
            held.heap.clear()
        if self._nc:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        if self.pool:
            await self.pool.close()

    @property
    def nc(self) -> nats.NATS:
        assert self._nc is not None
        return self._nc

    # --- internals ---------------------------------------------------------

    async def _health(self, body: Any = None) -> dict:  # noqa: ARG002
        return {"service": self.name, "ready": self.ready}

    async def _answer(self, subject: str, handle: Any, body: dict, query: bool) -> Reply:
        try:
            command = Command.model_validate(body)
        except ValidationError as exc:
            return Reply.refuse(422, "bad_command", str(exc))
        assert self.pool is not None
        try:
            if query:
                return await handle(self.pool, command)
            now = utcnow()
            async with self.pool.acquire() as conn:
                transaction = conn.transaction()
                await transaction.start()
                queued: list[Queued] = []
                try:
                    reply, effects = await handle(conn, command, now)
                    if reply.ok:
                        queued = await self._emit(conn, effects)
                        await transaction.commit()
                    else:
                        await transaction.rollback()  # a refused request changes nothing
                except BaseException:
                    await transaction.rollback()
                    raise
            if effects and reply.ok:
                self.relay.handoff(queued)
            return reply
        except Exception as exc:
            self.log.exception("request.failed", subject=subject)
            return Reply.refuse(503, "unavailable", f"{self.name} could not complete the request: {exc!r}")

    async def _emit(self, conn: asyncpg.Connection, effects: Effects) -> list[Queued]:
        """Queue the effects in the outbox; the rows to hand the relay once committed, if it leads."""
        queued = await write_outbox(conn, effects, notify=not self.relay.leading)
        # an event's subject is its type; a raw message (a clock's timer) is labelled by its
        # subject's first two tokens, never by the clock id in the rest. Counted per label, not per
        # message (labels() is a lookup under a lock), and OutboxMessage is tested first
        # (isinstance against a pydantic model goes through ABCMeta.__instancecheck__).
        emitted = Counter(".".join(e.subject.split(".")[:2]) if isinstance(e, OutboxMessage) else e.subject
                          for e in effects)
        for label, n in emitted.items():
            telemetry.EVENTS_EMITTED.labels(self.name, label).inc(n)
        return queued

    async def _consume(self, consumer: _Consumer, pull: PullBatches, held: _Held | None) -> None:
        """Take a batch (returns as soon as anything is there), handle or hold it, repeat."""
        inflight: set[asyncio.Task] = set()  # batches being handled (with `overlaps`)
        try:
            while not self._stopping:
                if consumer.overlaps is not None:  # overlapping batches can outrun the relay
                    await self.relay.room(RELAY_BACKLOG)
                try:
                    msgs = await pull.next_batch()
                except Exception as exc:  # disconnected: nats-py reconnects; try again shortly
                    if self._stopping:
                        break
                    self.log.warning("consumer.fetch_failed", durable=consumer.durable, error=repr(exc))
                    await asyncio.sleep(0.5)
                    continue
                if not msgs:
                    continue
                try:
                    if consumer.overlaps is not None:
                        await self._dispatch(msgs, consumer, inflight)
                    else:
                        await self._process_batch(msgs, consumer, held)
                except Exception as exc:  # e.g. NATS gone while dead-lettering: unacked ones come back
                    self.log.warning("consumer.batch_failed", durable=consumer.durable, error=repr(exc))
                    await asyncio.sleep(self.settings.nack_delay_s)
        finally:
            if inflight:
                await asyncio.wait(inflight)

    async def _dispatch(self, msgs: list[Msg], consumer: _Consumer, inflight: set[asyncio.Task]) -> None:
        """Start handling a batch, alongside earlier ones only if it `overlaps` them (see on_events)."""
        assert consumer.overlaps is not None
        parsed = await self._parse(msgs, consumer)
        if not all(consumer.overlaps(item) for _, item in parsed):
            await self._settle(inflight, 0)  # it may follow any of them: they finish first
        await self._settle(inflight, consumer.concurrency - 1)
        if parsed:
            task = asyncio.create_task(self._process_parsed(parsed, consumer))
            inflight.add(task)

    async def _settle(self, inflight: set[asyncio.Task], most: int) -> None:
        """Wait until at most `most` batches are in flight; a failed one is logged (its unacked
        messages come back)."""
        while len(inflight) > most:
            done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            inflight.difference_update(done)
            for task in done:
                if task.exception() is not None:
                    self.log.warning("consumer.batch_failed", error=repr(task.exception()))

    async def _parse(self, raw: list[Msg], consumer: _Consumer) -> list[tuple[Msg, Any]]:
        """The batch's messages parsed; a malformed one is dead-lettered."""
        parsed: list[tuple[Msg, Any]] = []
        for m in raw:
            try:
                parsed.append((m, consumer.parse(m)))
            except Poison as exc:
                await self.dead_letter(m, f"malformed: {exc}", consumer.subject)
                await m.ack()
        return parsed

    async def _process_batch(self, raw: list[Msg], consumer: _Consumer, held: _Held | None = None) -> None:
        parsed = await self._parse(raw, consumer)
        if held is None:
            await self._process_parsed(parsed, consumer)
            return
        await self._hold(parsed, consumer, held)

    async def _hold(self, parsed: list[tuple[Msg, Any]], consumer: _Consumer, held: _Held) -> None:
        """Early messages wait in the heap (prepared first, if the consumer prepares); those far too
        early go back to the server until then."""
        assert consumer.not_before is not None
        release, now = consumer.not_before, utcnow()
        horizon = now + timedelta(seconds=self.settings.hold_max_s)
        near, far = [], []
        for m, item in parsed:
            at = release(item) or _EPOCH
            (near if at <= horizon else far).append((at, m, item))
        if far:
            telemetry.HANDLED.labels(self.name, consumer.subject, "nack").inc(len(far))
        for at, m, _ in far:
            await m.nak(delay=(at - now).total_seconds())
        if not near:
            return
        items = [item for _, _, item in near]
        if consumer.prepare is not None:
            try:
                items = await consumer.prepare(self.pool, items)
            except TRANSIENT as exc:
                self.log.warning("prepare.transient_failure", error=repr(exc), size=len(near))
                telemetry.HANDLED.labels(self.name, consumer.subject, "nack").inc(len(near))
                for _, m, _ in near:
                    await m.nak(delay=self.settings.nack_delay_s)
                return
            except Exception:  # the handler then does the whole work itself
                self.log.exception("prepare.failed", subject=consumer.subject, size=len(near))
        for (at, m, _), item in zip(near, items, strict=True):
            held.push(at, m, item)

    async def _release(self, consumer: _Consumer, held: _Held) -> None:
        """Hand the held messages that are due to the handler, in time order, each as soon as it is
        due (not when a whole batch is); a newcomer earlier than the heap's top wakes it."""
        limit = 4 * self.settings.batch_size
        while not self._stopping:
            now = utcnow()
            wait = (held.heap[0][0] - now).total_seconds() if held.heap else 0.5
            if wait > 0:
                held.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(held.arrived.wait(), wait)
                continue
            ready = held.pop_ready(now, limit)
            try:
                await self._process_parsed(ready, consumer)
            except Exception as exc:  # e.g. NATS gone while acking: unacked ones come back
                self.log.warning("consumer.batch_failed", durable=consumer.durable, error=repr(exc))
                await asyncio.sleep(self.settings.nack_delay_s)

    async def _process_parsed(self, parsed: list[tuple[Msg, Any]], consumer: _Consumer) -> None:
        assert self.pool is not None
        started, now, label = time.perf_counter(), utcnow(), consumer.subject
        done: list[tuple[Msg, str]] = []
        failed: list[Msg] = []
        queued: list[Queued] = []
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                together = consumer.batch and len(parsed) > 1  # a batch of one goes straight to one by one
                if not (together and await self._handle_together(conn, consumer, parsed, now, done, queued)):
                    await self._handle_one_by_one(conn, consumer, parsed, now, done, failed, queued)
        except TRANSIENT as exc:
            self.log.warning("batch.transient_failure", error=repr(exc), size=len(parsed))
            for m, _ in parsed:
                telemetry.HANDLED.labels(self.name, label, "nack").inc()
                await m.nak(delay=self.settings.nack_delay_s)
            return
        if done:
            self.relay.handoff(queued)
        self.log.info(
            "batch", subject=label, size=len(parsed), handled=sum(1 for _, o in done if o == "ack"),
            duplicates=sum(1 for _, o in done if o == "duplicate"), failed=len(failed),
            ms=round((time.perf_counter() - started) * 1e3, 2),  # dead letters are logged one by one
        )
        for outcome, n in Counter(outcome for _, outcome in done).items():
            telemetry.HANDLED.labels(self.name, label, outcome).inc(n)
        for m, _ in done:
            await m.ack()
        if failed:
            telemetry.HANDLED.labels(self.name, label, "nack").inc(len(failed))
        for m in failed:
            await m.nak(delay=self.settings.nack_delay_s)

    async def _handle_together(
        self, conn: asyncpg.Connection, consumer: _Consumer, parsed: list[tuple[Msg, Any]], now: datetime,
        done: list[tuple[Msg, str]], queued: list[Queued],
    ) -> bool:
        """A batch handler's path: one inbox claim, one call, one outbox write. False if it failed."""
        keys = [consumer.dedup(item) for _, item in parsed]
        outcomes: list[str] = []
        try:
            async with conn.transaction():  # a savepoint: on failure, nothing of this attempt stays
                fresh = await claim_inbox_many(conn, [k for k in keys if k is not None])
                items = []
                for (_, item), key in zip(parsed, keys, strict=True):
                    if key is None or key in fresh:
                        fresh.discard(key)  # a second copy in the same batch is a duplicate
                        items.append(item)
                        outcomes.append("ack")
                    else:
                        outcomes.append("duplicate")
                if items:
                    rows = await self._emit(conn, await consumer.handle(conn, items, now))
        except TRANSIENT:
            raise
        except Exception:
            self.log.exception("batch_handler.failed", subject=consumer.subject, size=len(parsed))
            return False
        if items:
            queued += rows
        done.extend((m, outcome) for (m, _), outcome in zip(parsed, outcomes, strict=True))
        return True

    async def _handle_one_by_one(
        self, conn: asyncpg.Connection, consumer: _Consumer, parsed: list[tuple[Msg, Any]], now: datetime,
        done: list[tuple[Msg, str]], failed: list[Msg], queued: list[Queued],
    ) -> None:
        """Each message in its own savepoint: a failing one is retried later, the others go on, but
        not a later one of the same whistle (it waits, and keeps the whistle's events in order)."""
        held: set = set()
        for m, item in parsed:
            whistle = getattr(item, "whistle_id", None)  # the order that matters is per whistle
            if whistle is not None and whistle in held:
                self.log.info("message.held", subject=m.subject, whistle_id=str(whistle))
                failed.append(m)
                continue
            try:
                async with conn.transaction():
                    key = consumer.dedup(item)
                    if key is not None and not await claim_inbox(conn, key):
                        done.append((m, "duplicate"))
                        continue
                    effects = await (consumer.handle(conn, [item], now) if consumer.batch
                                     else consumer.handle(conn, item, now))
                    rows = await self._emit(conn, effects)
                queued += rows  # only once its savepoint stands
                done.append((m, "ack"))
            except TRANSIENT:
                raise
            except Exception:
                # a bug or a state we cannot handle: retry a few times, then the
                # max-deliveries advisory dead-letters it (never retried forever)
                self.log.exception("handler.failed", subject=m.subject, whistle_id=str(whistle or ""))
                failed.append(m)
                if whistle is not None:
                    held.add(whistle)

    async def dead_letter(self, m: Msg, reason: str, label: str) -> None:
        """Publish a poison message to the dead-letter stream with its reason, then it is acked."""
        meta = m.metadata
        headers = {
            "Whistle-Reason": reason[:1000],
            "Whistle-Subject": m.subject,
            "Whistle-Service": self.name,
            "Whistle-Stream-Seq": str(meta.sequence.stream) if meta else "",
            "Nats-Msg-Id": f"dl-{self.name}-{meta.stream if meta else ''}-{meta.sequence.stream if meta else ''}",
        }
        await self.nc.jetstream().publish(f"{subjects.DEADLETTER}.{self.name}", m.data, headers=headers)
        telemetry.HANDLED.labels(self.name, label, "dead_letter").inc()
        self.log.warning("message.dead_lettered", subject=m.subject, reason=reason[:300])


def main(build: Callable[[], ServiceRuntime]) -> None:
    """Run a service process on uvloop where it is installed (measured: less CPU per message and
    per Postgres round trip than the default loop), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # platforms without uvloop
        asyncio.run(build().run())
    else:
        uvloop.run(build().run())
