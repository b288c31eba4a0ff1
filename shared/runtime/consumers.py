"""Consuming JetStream: durable pull consumers batch by batch, in order per whistle, with the inbox,
retries in place, dead letters, timers held until due and partitions held by lease."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import asyncpg
from faststream.nats import JStream, PullSub
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from shared import subjects, telemetry
from shared.contracts import Event, parse_event
from shared.db import (
    OutboxMessage,
    Queued,
    claim_inbox,
    claim_inbox_many,
)
from shared.ids import utcnow
from shared.leases import Lease, LeaseKeeper, LeaseLost, fence_many, floor_of, holds
from shared.partitioned import PartitionedPull, durable_for, partition_filter_for, partition_of_subject
from shared.pull import PullBatches
from shared.runtime.faults import TRANSIENT, Poison, backoff
from shared.streams import consumer_config

T = TypeVar("T")
Effects = list[Event | OutboxMessage]

EventHandler = Callable[[asyncpg.Connection, Any, datetime], Awaitable[Effects]]
BatchHandler = Callable[[asyncpg.Connection, list[Any], datetime], Awaitable[Effects]]
Prepare = Callable[[asyncpg.Pool, list[Any]], Awaitable[list[Any]]]

if TYPE_CHECKING:
    from shared.runtime.service import ServiceRuntime


# handed outbox rows (two per new clock) the relay may have waiting before a consumer whose batches
# overlap fetches more; others never wait (clock firings must not queue behind a burst of arming:
# measured, making them wait too put the timers bench's lateness p99 at 0.59 and 1.21 s)
RELAY_BACKLOG = 4000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # release time of a message that names none


class _Blocked:
    """Whistles whose message failed on its own, each with that message and the later ones of the
    same whistle, in arrival order: retried in place (never redelivered, which could reorder them)
    until the first is handled or dead-lettered; the later ones then follow, in order."""

    def __init__(self) -> None:
        self.queues: dict[Any, deque[tuple[Msg, Any]]] = {}
        self.attempts: dict[Any, int] = {}
        self.retry_at: dict[Any, float] = {}
        self.errors: dict[Any, str] = {}

    def __contains__(self, key: Any) -> bool:
        return key in self.queues

    def park(self, key: Any, m: Msg, item: Any) -> None:
        self.queues[key].append((m, item))

    def block(self, key: Any, entries: list[tuple[Msg, Any]], error: str) -> None:
        """`entries` (the failed message first) wait behind the whistle's earlier failure, if any."""
        self.queues.setdefault(key, deque()).extendleft(reversed(entries))
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.errors[key] = error
        self.retry_at[key] = time.monotonic() + backoff(self.attempts[key])

    def due(self, now: float) -> list[Any]:
        return [key for key, at in self.retry_at.items() if at <= now]

    def take(self, key: Any) -> list[tuple[Msg, Any]]:
        """Everything waiting for the whistle, for another attempt (what fails again goes back)."""
        queue = self.queues.pop(key)
        self.retry_at.pop(key, None)
        self.queues[key] = deque()  # newcomers meanwhile still wait behind this attempt
        return list(queue)

    def settle(self, key: Any) -> None:
        """The attempt ended: forget the whistle unless something still waits."""
        if not self.queues.get(key):
            self.queues.pop(key, None)
            self.attempts.pop(key, None)
            self.errors.pop(key, None)
            self.retry_at.pop(key, None)
        elif key not in self.retry_at:
            self.retry_at[key] = time.monotonic()  # newcomers that arrived during the attempt

    def messages(self) -> list[Msg]:
        return [m for queue in self.queues.values() for m, _ in queue]

    def forget(self, drop: Callable[[Msg], bool]) -> None:
        """Let go of the whistles whose messages `drop` picks (a partition gone to another replica)."""
        for key in [k for k, queue in self.queues.items() if any(drop(m) for m, _ in queue)]:
            for table in (self.queues, self.attempts, self.retry_at, self.errors):
                table.pop(key, None)


def _key(m: Msg, item: Any) -> Any:
    """The order that matters is per whistle; a message of no whistle waits for nothing but itself."""
    whistle = getattr(item, "whistle_id", None)
    if whistle is not None:
        return whistle
    meta = m.metadata
    return ("message", meta.stream, meta.sequence.stream) if meta else ("message", id(m))


def parse_domain_event(m: Msg) -> Event:
    try:
        return parse_event(m.subject, m.data)
    except (ValidationError, ValueError) as exc:
        raise Poison(str(exc)) from exc


def _event_id(event: Any) -> UUID | None:
    return event.event_id


@dataclass(frozen=True)
class Timed:
    """A consumer of messages that fall due: `not_before` gives each one's release time, `prepare` (if any)
    the work done on a batch as soon as it arrives (see `Consumer`)."""

    not_before: Callable[[Any], datetime | None]
    prepare: Prepare | None = None


@dataclass(frozen=True)
class Consumer:
    """One consumer a service declares, as data (as a `Request` is): `subject` (or several, in one
    order: `EventRoutes`) from `stream` with a durable pull consumer, batch by batch, in order.

    With `batch=True` the handler takes the list of a fetched batch's new messages (in stream
    order, redeliveries already dropped by the inbox) and does set-based SQL; should it fail,
    the batch is handled again one message at a time, so one bad message cannot sink the rest.

    `concurrency` > 1 runs that many fetch-and-handle loops on the same durable consumer, so one
    batch's Postgres round trips overlap another's CPU. Only for messages whose order does not
    matter (each handler locks what it changes, and stale messages are recognised).

    The pull loop is our own (nats-py): FastStream 0.7.8's batch subscriber, with the short
    collection timeout low latency needs, left delivered messages unhandled until their
    ack_wait ran out (measured here: 30 s stalls). FastStream still documents the subject.

    `timed` (`Timed`): its `not_before` gives a message's release time: one that arrives earlier is
    held (unacked) until then, and one more than `hold_max_s` early goes back to the server with that
    delay. Timers
    that JetStream fires a little ahead of their time are thus handled on time, never early.
    Fetching goes on while messages wait; `concurrency` releasers hand the due ones, in time
    order, to the handler.

    Its `prepare` runs on a batch as soon as it arrives, before it is held, and
    what it returns is what the handler gets: work that can be done ahead (reading, computing,
    serialising) is then out of the way when the messages fall due. Should it fail, the handler
    gets the messages as parsed.

    `overlaps` keeps one ordered fetch loop but lets batches overlap where order cannot matter:
    a batch whose every message it holds true for (a new summons, which nothing earlier can
    touch) is handled while earlier batches still are, up to `concurrency` at a time; any other
    batch first waits until every earlier one is done. One batch's Postgres round trips and
    commit then overlap the next one's CPU, and no message is handled before one it follows.

    Faults: a transient one (database or NATS away) is retried in place, the batch in hand and
    nothing more fetched, until it passes; it never counts against the message. A message that
    fails on its own is retried in place with backoff, the later messages of its whistle waiting
    behind it (across batches), and after `max_deliver` attempts (the setting by default; -1:
    never, for a consumer that must not dead-letter) it is dead-lettered with its last error.

    `after_commit` is awaited with the items each transaction handled (not duplicates) once it has
    committed, before the acks; it must not fail the batch (an exception is logged, nothing retried).

    `linger_s` > 0 gathers a batch for that long after its first message came (unless it fills first),
    for a consumer that nobody waits on (a projection, a notification, a clock that starts from the
    event's own time). At a district's rates messages come a few at a time, and every batch costs a
    transaction (BEGIN, the fence, the handler's statements, COMMIT) and a relay publish whatever its
    size: gathered for 0.1 s, the ledger's eleven events a whistle take a few transactions, not seven.
    Consumers on the way to an answer (routing, response) take what is there at once.

    `partitioned` (by default: domain events, whose subjects carry their whistle's partition) makes
    the consumer one per replica, filtered to the partitions it holds and made again when they change
    (shared/partitioned.py): the replicas of a service share the work, each whistle's events stay
    in order, and every transaction first checks that its partitions are still held (the fence).
    """

    subject: str | Sequence[str]
    handle: EventHandler | BatchHandler
    durable: str | None = None
    batch: bool = False
    concurrency: int = 1
    stream: str = subjects.EVENTS_STREAM
    parse: Callable[[Msg], Any] = parse_domain_event
    dedup: Callable[[Any], UUID | None] = _event_id
    timed: Timed | None = None
    overlaps: Callable[[Any], bool] | None = None
    max_deliver: int | None = None
    after_commit: Callable[[list[Any]], Awaitable[None]] | None = None
    partitioned: bool | None = None
    linger_s: float = 0.0


@dataclass(frozen=True)
class _Consumer:
    subject: str  # its subjects, comma-separated: what logs, metrics and dead letters call it
    filters: tuple[str, ...]
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
    max_deliver: int | None = None  # a failing message's attempts before it is dead-lettered; -1: never
    after_commit: Callable[[list[Any]], Awaitable[None]] | None = None
    partitioned: bool = False  # by partition of whistles: one consumer over those this replica holds
    linger_s: float = 0.0  # how long a batch gathers after its first message (see `Consumer`)
    blocked: _Blocked = field(default_factory=_Blocked, compare=False)


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



class Consuming:
    """The event side of a `ServiceRuntime`."""

    def consume(self, *consumers: Consumer) -> None:
        """Consume each (see `Consumer`), and document its subjects in the AsyncAPI document."""
        for c in consumers:
            self._consume_one(c)

    def _consume_one(self, c: Consumer) -> None:
        stream, parse = c.stream, c.parse
        partitioned = c.partitioned
        if partitioned is None:
            partitioned = stream == subjects.EVENTS_STREAM and parse is parse_domain_event
        filters = (c.subject,) if isinstance(c.subject, str) else tuple(c.subject)
        subject = ",".join(filters)
        durable = c.durable or f"{self.name}-{subject.replace('.', '-').replace('>', 'all').replace('*', 'any')}"
        self._consumers.append(_Consumer(
            subject, filters, stream, durable, c.handle, parse, c.dedup, c.batch, c.concurrency,
            c.timed.not_before if c.timed else None, c.timed.prepare if c.timed else None, c.overlaps,
            c.max_deliver, c.after_commit, partitioned, c.linger_s))
        doc = (c.handle.__doc__ or "").strip()

        async def documented(body: Any) -> None:  # never called: the AsyncAPI entry only
            raise NotImplementedError

        for one in filters:
            self.spec_broker.subscriber(
                one, stream=JStream(stream, declare=False), durable=durable, pull_sub=PullSub(batch=True),
                title=f"{self.name}:{one}", description=doc,
            )(documented)

    def event_takers(self, partitions: int) -> list[tuple[str, tuple[str, ...]]]:
        """What this service takes from the events stream, (name, filters): a partitioned consumer's once per
        partition, narrowed to it (whichever replica's consumer holds the partition stands for it, its
        name of the same family). The log erasure waits for each of them (shared/log_erasure.py)."""
        made: list[tuple[str, tuple[str, ...]]] = []
        for c in self._consumers:
            if c.stream != subjects.EVENTS_STREAM:
                continue
            made += [(durable_for(c.durable, p), tuple(partition_filter_for(f, p) for f in c.filters))
                     for p in range(partitions)] if c.partitioned else [(c.durable, c.filters)]
        return made

    def durables(self, partitions: int) -> list[tuple[str, str]]:
        """Every durable consumer this service may make, (stream, name): a partitioned one's under each name
        its replicas' consumers can take (after the lowest partition held; its NATS user may make, pull,
        reset and delete these and no other; shared/nats_auth.py)."""
        made: list[tuple[str, str]] = []
        for c in self._consumers:
            made += [(c.stream, durable_for(c.durable, p)) for p in range(partitions)] if c.partitioned \
                else [(c.stream, c.durable)]
        return made

    async def _start_consumers(self, js) -> None:
        """Declare or update each consumer's durable and start its fetch loops; partitioned ones start
        with the partitions the lease keeper gives this replica."""
        for consumer in self._consumers:
            # the server's count of deliveries only guards against a message that kills its process
            # every time: failures are counted here, and transient faults are never counted
            config = consumer_config(
                consumer.durable, max_deliver=-1 if consumer.max_deliver == -1 else self.settings.crash_deliver,
                ack_wait_s=self.settings.ack_wait_s, filters=consumer.filters,
            )
            self._tasks.append(asyncio.create_task(self._retry_blocked(consumer), name=f"{consumer.durable}-retry"))
            if consumer.partitioned:  # its durables come with the partitions this replica takes
                pull = PartitionedPull(
                    self._nc, js, consumer.stream, consumer.durable, consumer.filters, batch=self.settings.batch_size,
                    config=config, floor=functools.partial(floor_of, self.pool, consumer.durable),
                    holds=functools.partial(holds, self.pool, self.replica), partitions=self.settings.partitions,
                    linger_s=consumer.linger_s)
                self._pull_of[consumer.durable] = pull
                self._pulls.append(pull)
                self._tasks.append(asyncio.create_task(self._consume(consumer, pull, None), name=consumer.durable))
                continue
            try:
                info = await js.consumer_info(consumer.stream, consumer.durable)
                # two of the few settings JetStream lets a durable change
                if (info.config.max_deliver, info.config.ack_wait) != (config.max_deliver, config.ack_wait):
                    await js.add_consumer(consumer.stream, config)
            except NotFoundError:
                await js.add_consumer(consumer.stream, config)
            held = _Held() if consumer.not_before is not None else None
            if held is not None:
                self._held.append(held)
            loops = 1 if consumer.overlaps is not None else consumer.concurrency
            for _ in range(loops):  # each loop its own pull requests on the durable
                pull = PullBatches(self._nc, consumer.stream, consumer.durable, batch=self.settings.batch_size,
                                   linger_s=consumer.linger_s)
                await pull.start()
                self._pulls.append(pull)
                self._tasks.append(asyncio.create_task(self._consume(consumer, pull, held), name=consumer.durable))
                if held is not None:
                    self._tasks.append(asyncio.create_task(self._release(consumer, held), name=f"{consumer.durable}-hold"))
        if self._pull_of:
            self.keeper = LeaseKeeper(self.pool, self.replica, self.settings.partitions, gained=self._gained,
                                      lost=self._lost, ttl_s=self.settings.lease_ttl_s,
                                      round_s=self.settings.lease_round_s)
            self.keeper.start()
            with contextlib.suppress(TimeoutError):  # alone, it starts with every partition; else with its share
                await asyncio.wait_for(self.keeper.first_round.wait(), 60)

    async def _stop_consumers(self) -> None:
        """Give back partitions and unhandled messages, each to be redelivered in order and on time."""
        if self.keeper is not None:  # the partitions go back at once: the other replicas need not wait
            with contextlib.suppress(Exception):
                await self.keeper.stop()
        for pull in self._pulls:  # a message delivered after the last batch would hold drain() up
            with contextlib.suppress(Exception):
                await pull.stop()
        now = utcnow()
        for held in self._held:  # back to the server for the next process, each due at its time
            for at, _, m, _ in held.heap:
                with contextlib.suppress(Exception):
                    await m.nak(delay=max((at - now).total_seconds(), 0.0))
            held.heap.clear()
        for consumer in self._consumers:  # whistles behind a failure: back to the server, in order
            for m in consumer.blocked.messages():
                with contextlib.suppress(Exception):
                    await m.nak()

    async def _consumer_lag(self, _: ServiceRuntime) -> None:
        js = self.nc.jetstream()
        for c in self._consumers:
            pending = ack_pending = 0
            if c.partitioned:
                made = self._pull_of[c.durable].name
                durables = [made] if made else []
            else:
                durables = [c.durable]
            for durable in durables:
                with contextlib.suppress(NotFoundError):  # made again meanwhile
                    info = await js.consumer_info(c.stream, durable)
                    pending += info.num_pending or 0
                    ack_pending += info.num_ack_pending or 0
            telemetry.CONSUMER_PENDING.labels(self.name, c.durable).set(pending)
            telemetry.CONSUMER_ACK_PENDING.labels(self.name, c.durable).set(ack_pending)


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
        """Start handling a batch, alongside earlier ones only if it `overlaps` them (see `Consumer`)."""
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
                await self._ack(consumer, [m])
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
            except TRANSIENT as exc:  # the handler then does the work, retried in place if need be
                self.log.warning("prepare.transient_failure", error=repr(exc), size=len(near))
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

    # --- partitions ----------------------------------------------------------

    async def _gained(self, lease: Lease) -> None:
        """A partition taken: every partitioned consumer starts on it, from where its last holder stopped."""
        for pull in self._pull_of.values():
            await pull.add(lease)

    async def _lost(self, partition: int) -> None:
        """A partition given back or taken: stop fetching it and forget its messages in hand (unacked, its
        next holder gets them again, in order)."""
        for pull in self._pull_of.values():
            await pull.remove(partition)
        for consumer in self._consumers:
            if consumer.partitioned:
                consumer.blocked.forget(lambda m: partition_of_subject(m.subject) == partition)

    def _held_only(self, parsed: list[tuple[Msg, Any]], consumer: _Consumer) -> list[tuple[Msg, Any]]:
        """The messages of partitions this replica still holds (the others are its next holder's)."""
        if not consumer.partitioned or self.keeper is None:
            return parsed
        held = self.keeper.held
        return [(m, item) for m, item in parsed if partition_of_subject(m.subject) in held]

    async def _fence(self, conn: asyncpg.Connection, consumer: _Consumer, parsed: list[tuple[Msg, Any]],
                     settling: list[Msg]) -> None:
        """At the end of the batch's transaction: LeaseLost unless every partition it touches is still ours
        (until it commits, nobody can take them over), and the consumer's floors in those partitions
        once `settling` (what this transaction handled) is, written in the same statement."""
        if not consumer.partitioned or self.keeper is None:
            return
        partitions = {partition_of_subject(m.subject) for m, _ in parsed}
        leases = [self.keeper.held.get(p) for p in partitions]  # type: ignore[arg-type]
        pull = self._pull_of[consumer.durable]
        floors = pull.floors(partitions, settling)  # type: ignore[arg-type]
        if any(lease is None for lease in leases) or len(floors) < len(partitions):
            raise LeaseLost(f"partitions {sorted(p for p in partitions if p not in floors)} are not held")
        await fence_many(conn, self.replica, leases, consumer.durable, floors,  # type: ignore[arg-type]
                         pull.stream_created)  # type: ignore[arg-type]

    async def _ack(self, consumer: _Consumer, msgs: list[Msg]) -> None:
        """Settled: acknowledged, each one, or for a partitioned consumer with the one acknowledgement that
        covers them once nothing before them is still in hand (shared/partitioned.py); they no longer hold
        their partitions' floors down."""
        if not consumer.partitioned:
            for m in msgs:
                await m.ack()
        elif (pull := self._pull_of.get(consumer.durable)) is not None and (last := pull.settle(msgs)) is not None:
            await last.ack()

    async def _process_parsed(self, parsed: list[tuple[Msg, Any]], consumer: _Consumer) -> None:
        """Handle a batch, except the messages of whistles blocked behind a failure (they wait their
        turn); a transient fault is retried in place, the batch still in hand, until it passes."""
        blocked = consumer.blocked
        fresh = []
        for m, item in self._held_only(parsed, consumer):
            key = _key(m, item)
            if key in blocked:
                blocked.park(key, m, item)
            else:
                fresh.append((m, item))
        if fresh:
            failed = await self._attempt_until_done(fresh, consumer, fresh=True)
            for key, entries, error in failed:
                blocked.block(key, entries, error)
                telemetry.HANDLED.labels(self.name, consumer.subject, "retry").inc(len(entries))

    async def _attempt_until_done(
        self, parsed: list[tuple[Msg, Any]], consumer: _Consumer, *, fresh: bool = False,
    ) -> list[tuple[Any, list[tuple[Msg, Any]], str]]:
        """One transaction for the batch, again and again while the database or NATS is away (the
        messages kept, their ack deadline pushed back, nothing fetched meanwhile), then acks.
        Returns the whistles whose message failed on its own: each with that message and the later
        ones of the batch, and the error."""
        attempt, component = 0, f"consumer:{consumer.durable}"
        kept_at = time.monotonic()
        while True:
            try:
                done, failed, queued = await self._attempt(parsed, consumer, fresh)
                break
            except LeaseLost as exc:  # taken over meanwhile: learn which, and go on with the rest
                self.log.warning("batch.lease_lost", durable=consumer.durable, error=str(exc), size=len(parsed))
                assert self.keeper is not None
                with contextlib.suppress(Exception):
                    await self.keeper.round()
                parsed = self._held_only(parsed, consumer)
                if not parsed or self._stopping:
                    return []
                await asyncio.sleep(0.1)
            except TRANSIENT as exc:
                attempt += 1
                self.stalled(component, f"{consumer.durable}: {exc!r}")
                if attempt == 1:
                    self.log.warning("batch.transient_failure", durable=consumer.durable, error=repr(exc),
                                     size=len(parsed))
                if self._stopping:  # unacked: the next process gets them
                    return []
                await asyncio.sleep(backoff(attempt))
                if time.monotonic() - kept_at > self.settings.ack_wait_s / 3:
                    kept_at = time.monotonic()
                    await self._keep([m for m, _ in parsed])
        if attempt:
            self.recovered(component)
            self.log.info("batch.recovered", durable=consumer.durable, attempts=attempt + 1)
        if done:
            self.relay.handoff(queued)
        for outcome, n in Counter(outcome for _, outcome in done).items():
            telemetry.HANDLED.labels(self.name, consumer.subject, outcome).inc(n)
        await self._ack(consumer, [m for m, _ in done])
        return failed

    async def _keep(self, msgs: list[Msg]) -> None:
        """Tell the server these messages are still being worked on (their ack wait starts again)."""
        try:
            for m in msgs:
                if not m.is_acked:  # acknowledged meanwhile (one acknowledgement covers others, harmlessly)
                    await m.in_progress()
        except Exception as exc:  # NATS away too: they may come back later, the inbox drops the copy
            self.log.info("messages.keep_failed", error=repr(exc), size=len(msgs))

    async def _attempt(self, parsed: list[tuple[Msg, Any]], consumer: _Consumer, fresh: bool = False):
        """Handle the batch in one transaction: (done, failed, queued); a transient fault raises. A batch
        handler takes fresh messages together, even one alone: a savepoint per message costs two round
        trips more, and at a district's rates most batches hold one message (at 50 whistles/s, 47
        statements a whistle). Messages retried after a failure go one by one."""
        assert self.pool is not None
        started, now = time.perf_counter(), utcnow()
        done: list[tuple[Msg, str]] = []
        failed: list[tuple[Any, list[tuple[Msg, Any]], str]] = []
        queued: list[Queued] = []
        async with self.pool.acquire() as conn:
            together = consumer.batch and (fresh or len(parsed) > 1)
            if not (together and await self._handle_together(conn, consumer, parsed, now, done, queued)):
                async with conn.transaction():
                    await self._handle_one_by_one(conn, consumer, parsed, now, done, failed, queued)
                    await self._fence(conn, consumer, parsed, [m for m, _ in done])
            if consumer.after_commit is not None:  # committed: tell whoever waits on it (before the pool's reset)
                handled = {id(m) for m, outcome in done if outcome == "ack"}
                items = [item for m, item in parsed if id(m) in handled]
                if items:
                    try:
                        await consumer.after_commit(items)
                    except Exception:
                        self.log.exception("after_commit.failed", durable=consumer.durable, size=len(items))
        telemetry.BATCH_MESSAGES.labels(self.name, consumer.durable).observe(len(parsed))
        self.log.info(
            "batch", subject=consumer.subject, size=len(parsed), handled=sum(1 for _, o in done if o == "ack"),
            duplicates=sum(1 for _, o in done if o == "duplicate"), failed=len(failed),
            ms=round((time.perf_counter() - started) * 1e3, 2),  # dead letters are logged one by one
        )
        return done, failed, queued

    async def _retry_blocked(self, consumer: _Consumer) -> None:
        """Try the blocked whistles again when their backoff is up; a message that has failed
        `max_deliver` times is dead-lettered with its last error, and its whistle's later ones go on."""
        blocked = consumer.blocked
        most = consumer.max_deliver or self.settings.max_deliver
        kept_at = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(0.1)
            if time.monotonic() - kept_at > self.settings.ack_wait_s / 3:
                kept_at = time.monotonic()
                # and, under one acknowledgement for all, those handled after them that it waits on
                pull = self._pull_of.get(consumer.durable) if consumer.partitioned else None
                await self._keep(blocked.messages() + (pull.acks.waiting() if pull is not None else []))
            for key in blocked.due(time.monotonic()):
                if key not in blocked:  # its partition went to another replica meanwhile
                    continue
                entries = blocked.take(key)
                head, attempts, error = entries[0], blocked.attempts.get(key, 0), blocked.errors.get(key, "")
                try:
                    if most > 0 and attempts >= most:
                        await self.dead_letter(head[0], f"failed {attempts} times: {error}", consumer.subject, attempts)
                        await self._ack(consumer, [head[0]])
                        entries = entries[1:]
                        blocked.attempts[key] = 0
                    failed = await self._attempt_until_done(entries, consumer) if entries else []
                except Exception as exc:  # NATS away while dead-lettering or acking: again later
                    self.log.warning("consumer.retry_failed", durable=consumer.durable, error=repr(exc))
                    failed = [(key, entries, blocked.errors.get(key, repr(exc)))]
                    blocked.attempts[key] = max(blocked.attempts.get(key, 1) - 1, 0)  # not the message's fault
                for k, again, err in failed:
                    if again[0][0] is not head[0]:  # the first went through: a later one is the new head
                        blocked.attempts[k] = 0
                    blocked.block(k, again, err)
                blocked.settle(key)

    async def _handle_together(
        self, conn: asyncpg.Connection, consumer: _Consumer, parsed: list[tuple[Msg, Any]], now: datetime,
        done: list[tuple[Msg, str]], queued: list[Queued],
    ) -> bool:
        """A batch handler's path: one inbox claim, one call, one outbox write, committed. False if it failed."""
        keys = [consumer.dedup(item) for _, item in parsed]
        outcomes: list[str] = []
        try:
            # a transaction of its own, not a savepoint in the one-by-one path's (two round trips fewer a
            # batch): on failure nothing of this attempt stays, and the messages go one by one in another
            async with conn.transaction():
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
                    rows = await self.emit(conn, await consumer.handle(conn, items, now))
                await self._fence(conn, consumer, parsed, [m for m, _ in parsed])
        except LeaseLost:
            raise
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
        done: list[tuple[Msg, str]], failed: list[tuple[Any, list[tuple[Msg, Any]], str]], queued: list[Queued],
    ) -> None:
        """Each message in its own savepoint: a failing one is retried later, the others go on, but
        not a later one of the same whistle (it waits, and keeps the whistle's events in order)."""
        held: dict[Any, list[tuple[Msg, Any]]] = {}
        for m, item in parsed:
            key = _key(m, item)
            if key in held:
                held[key].append((m, item))
                continue
            try:
                async with conn.transaction():
                    dedup = consumer.dedup(item)
                    if dedup is not None and not await claim_inbox(conn, dedup):
                        done.append((m, "duplicate"))
                        continue
                    effects = await (consumer.handle(conn, [item], now) if consumer.batch
                                     else consumer.handle(conn, item, now))
                    rows = await self.emit(conn, effects)
                queued += rows  # only once its savepoint stands
                done.append((m, "ack"))
            except TRANSIENT:
                raise
            except Exception as exc:
                # a bug or a state we cannot handle: retried in place a few times, then dead-lettered
                # with this error (never retried forever)
                self.log.exception("handler.failed", subject=m.subject, key=str(key))
                held[key] = [(m, item)]
                failed.append((key, held[key], f"{type(exc).__name__}: {exc}"))

    async def dead_letter(self, m: Msg, reason: str, label: str, attempts: int | None = None) -> None:
        """Publish a message that cannot be handled to the dead-letter stream with its reason and where
        it came from (stream, sequence, consumer, deliveries), for the ledger to record; then it is acked."""
        meta = m.metadata
        stream, seq = (meta.stream, str(meta.sequence.stream)) if meta else ("", "")
        consumer = meta.consumer if meta else ""
        headers = {
            "Whistle-Reason": " ".join(reason.split())[:1000],  # one line: a header cannot hold CR or LF
            "Whistle-Subject": m.subject,
            "Whistle-Service": self.name,
            "Whistle-Stream": stream,
            "Whistle-Stream-Seq": seq,
            "Whistle-Consumer": consumer,
            # attempts in this process (retried in place), else the server's deliveries
            "Whistle-Deliveries": str(attempts or (meta.num_delivered if meta else 0)),
            "Nats-Msg-Id": f"dl-{self.name}-{consumer}-{stream}-{seq}",
        }
        await self.nc.jetstream().publish(f"{subjects.DEADLETTER}.{self.name}", m.data, headers=headers)
        telemetry.HANDLED.labels(self.name, label, "dead_letter").inc()
        self.log.warning("message.dead_lettered", subject=m.subject, consumer=consumer, reason=reason[:300])


