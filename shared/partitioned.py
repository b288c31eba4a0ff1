"""A consumer of domain events spread over partitions: one consumer per replica, filtered to the
partitions it holds (shared/leases.py), made again whenever that set changes.

Where the consumer stands in each partition is kept in Postgres, not by NATS: each batch's transaction
writes the consumer's floor for the partitions it touches (the stream sequence up to which every message
of the partition is handled: `floors()`), in the statement that checks the leases (`fence_many`). So the
position commits with the work or not at all, and the NATS consumer itself can live in memory
(`mem_storage`: a file-backed one rewrites its state file up to ten times a second). Taking a partition,
giving one back, or finding the consumer gone after NATS restarted makes the consumer afresh, starting at
the first message after the lowest floor: what was fetched and not committed comes again, in order (the
inbox drops what was handled already), and what a partition had handled before the others' floors is
dropped here.

Acknowledgements: the consumer's policy is AckPolicy.ALL, one acknowledgement covering every message before
it. Only this replica pulls from it, so a batch is acknowledged with one message (`AckFrontier`): the last
below every one still in hand, never past a message not yet settled (a whistle blocked behind a failure
holds the acknowledgements after it back until it is handled or dead-lettered; meanwhile they are kept
from coming back like the blocked whistle itself). Measured at 256 whistles in flight: 12 acknowledgements
a whistle (one per delivery) became a few a batch, and NATS's CPU per whistle fell by about 15%.

One consumer, not one per partition: sixteen durables filtered to a partition each make the server walk
every message sixteen times per service to find each one's next (measured: NATS 0.61 ms of CPU per whistle
against 0.47 with one partition), and sixteen pull requests, feeds and subscriptions cost every service
Python work per batch. A replica that holds every partition takes the whole subject, unfiltered by
partition. The consumer is named after the lowest partition it holds (`consumer_name`): replicas hold
disjoint partitions, so their names differ, and each name is one its service's NATS user may make.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

import nats
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from shared.leases import Lease
from shared.pull import BACKOFF_S, PullBatches
from shared.streams import filtered

log = structlog.get_logger("partitioned")

# a pull request's refusals that mean its consumer may be gone: no responders, not found, deleted
GONE = frozenset({"503", "404", "409"})
MAKE_WAIT_S = 5.0  # how long taking or giving back a partition waits for the consumer made again


def partition_of_subject(subject: str) -> int | None:
    """The partition token of a stored event subject (`<type>.<verb>.<p>.<whistle_id>`), else None."""
    tokens = subject.split(".")
    return int(tokens[2]) if len(tokens) == 4 and tokens[2].isdigit() else None


def partition_filter_for(subject: str, partition: int | str) -> str:
    """A consumer's subject (`whistle.blown`, `summons.>`, `>`) narrowed to one partition (`*`: any)."""
    tokens = subject.split(".")
    if tokens[-1] == ">":
        tokens = tokens[:-1]
    tokens = (tokens + ["*", "*"])[:2]
    return ".".join([*tokens, str(partition), "*"])


def durable_for(base: str, partition: int) -> str:
    return f"{base}-p{partition:02d}"


def floor_in_hand(outstanding: set[int], top: int, settling: set[int]) -> int:
    """A partition's floor once `settling` is settled: just below the first message still in hand (taken
    and not settled), else the last taken."""
    left = outstanding - settling if settling else outstanding
    return min(left) - 1 if left else top


def consumer_name(base: str, held: Iterable[int]) -> str:
    """The name of the consumer of a replica holding `held`: after the lowest of them."""
    return durable_for(base, min(held))


def family_of(name: str) -> str:
    """The consumer a durable's name is made from (`durable_for`): `ledger-events-p03` → `ledger-events`."""
    base, _, partition = name.rpartition("-p")
    return base if base and partition.isdigit() else name


def in_sequence(last: int | None, sequences: list[int]) -> int | None:
    """The last of `sequences` when they follow `last` one by one (None: anything may come first); None
    when a delivery is missing. Only this replica pulls from its consumer, so every delivery comes here,
    and a gap is one lost on the way (a NATS node died with it): the messages after it must not be handled
    before it."""
    for seq in sequences:
        if last is not None and seq != last + 1:
            return None
        last = seq
    return last


class AckFrontier:
    """Which message to acknowledge, under AckPolicy.ALL, once some are settled (handled, dead-lettered or
    dropped as handled before): the last settled one below every message still in hand, if any is new."""

    def __init__(self) -> None:
        self._in_hand: dict[int, Msg] = {}  # stream sequence → the message taken, not yet settled
        self._settled: list[tuple[int, int, Msg]] = []  # a heap of those settled above one still in hand
        self._order = itertools.count()

    def reset(self) -> None:
        """A consumer made afresh: what the one before delivered is not acknowledged on it."""
        self._in_hand.clear()
        self._settled.clear()

    def taken(self, seq: int, m: Msg) -> None:
        self._in_hand[seq] = m

    def waiting(self) -> list[Msg]:
        """The settled messages whose acknowledgement waits on one before them (to be kept from coming back
        while it does)."""
        return [m for _, _, m in self._settled]

    def settle(self, msgs: Iterable[Msg]) -> Msg | None:
        """The message whose acknowledgement covers `msgs` and every settled one before them; None while
        one before them is still in hand (or none of them was taken from the consumer in use)."""
        for m in msgs:
            seq = m.metadata.sequence.stream
            if self._in_hand.get(seq) is m:
                del self._in_hand[seq]
                heapq.heappush(self._settled, (seq, next(self._order), m))
        below = min(self._in_hand, default=None)
        last = None
        while self._settled and (below is None or self._settled[0][0] < below):
            last = heapq.heappop(self._settled)[2]
        return last


class _Part:
    def __init__(self, lease: Lease):
        self.lease = lease
        self.started = False  # its floor read (Postgres) and the consumer made to deliver it
        self.skip = 0  # stream sequences up to this one are handled: delivered again, they are dropped
        self.outstanding: set[int] = set()  # stream sequences taken and not yet settled (acked)
        self.top = 0  # the highest stream sequence taken (or the floor it started from)


class PartitionedPull:
    """`next_batch()` like PullBatches, from this replica's consumer of the partitions added so far."""

    def __init__(self, nc: nats.NATS, js: JetStreamContext, stream: str, base: str, filters: tuple[str, ...], *,
                 batch: int, config: ConsumerConfig, floor: Callable[[int, datetime], Awaitable[int | None]],
                 holds: Callable[[Lease], Awaitable[bool]], partitions: int | None = None, linger_s: float = 0.0):
        self._nc, self._js = nc, js
        self._linger_s = linger_s
        self._floor, self._holds = floor, holds  # the partition's floor in Postgres; whether a lease still stands
        self.stream_created: datetime | None = None  # the stream's (its sequences are of that one stream)
        self._asking = asyncio.Semaphore(2)  # partitions taken at once ask Postgres two at a time (the
        # pool would otherwise open every connection it may, in every service and replica at once)
        self.stream, self.base, self.filters = stream, base, filters
        self._partitions = partitions  # all of them (None: unknown, always filtered by partition)
        self._batch = batch
        self._config = config  # every setting but the name, the filter and where it starts
        self.parts: dict[int, _Part] = {}
        self.name: str | None = None  # the consumer's, once made
        self._pull: PullBatches | None = None
        self._installed = asyncio.Event()  # a consumer is there to pull from
        self._delivered: int | None = None  # the consumer sequence of the last delivery taken
        self._generation = 0  # counts the consumers made: a batch of an earlier one is dropped
        self.acks = AckFrontier()  # of the consumer in use
        self._asked = self._made = 0  # changes asked for; those the consumer made last had seen
        self._wanted = asyncio.Event()
        self._done = asyncio.Condition()
        self._maker: asyncio.Task | None = None

    async def add(self, lease: Lease) -> None:
        """Start fetching a partition just taken, from its floor (the consumer made again with it)."""
        self.parts[lease.partition] = _Part(lease)
        await self._remake(MAKE_WAIT_S)

    async def remove(self, partition: int) -> None:
        """Stop fetching a partition given back or taken: none of its messages is returned from now on, and
        once this returns the consumer no longer takes it (its next holder's consumer delivers it), unless
        NATS is away (then it is made again, without it, as soon as NATS is back)."""
        if self.parts.pop(partition, None) is not None:
            await self._remake(MAKE_WAIT_S)

    async def stop(self) -> None:
        if self.parts or self.name is not None:
            self.parts.clear()
            await self._remake(2.0)
        if self._maker is not None:
            self._maker.cancel()
            await asyncio.wait({self._maker}, timeout=2.0)
            self._maker = None

    async def start(self) -> None:  # the same life as a PullBatches
        return None

    def floors(self, partitions: set[int], settling: list[Msg]) -> dict[int, int]:
        """The floor of each of `partitions` held here once `settling` (handled in the same transaction) is."""
        done: dict[int | None, set[int]] = {}
        for m in settling:
            done.setdefault(partition_of_subject(m.subject), set()).add(m.metadata.sequence.stream)
        return {p: floor_in_hand(part.outstanding, part.top, done.get(p, set()))
                for p in partitions if (part := self.parts.get(p)) is not None}

    def settle(self, msgs: list[Msg]) -> Msg | None:
        """These are settled: they no longer hold their partition's floor down. Returns the message to
        acknowledge for them (`AckFrontier`), if any."""
        for m in msgs:
            part = self.parts.get(partition_of_subject(m.subject))  # type: ignore[arg-type]
            if part is not None:
                part.outstanding.discard(m.metadata.sequence.stream)
        return self.acks.settle(msgs)

    async def _remake(self, wait_s: float | None = None) -> None:
        """Have the consumer made again for the partitions held now; returns once a consumer made after this
        call is there, or after `wait_s`. Changes that come together (a round's partitions, taken at once)
        make one consumer. The making itself runs in a task of its own, retried until it succeeds: a
        caller that stops waiting does not leave it half done."""
        self._asked += 1
        asked = self._asked
        self._wanted.set()
        if self._maker is None or self._maker.done():
            self._maker = asyncio.create_task(self._keep_made(), name=f"{self.base}-make")

        async def made() -> None:
            async with self._done:
                await self._done.wait_for(lambda: self._made >= asked)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(made(), wait_s)

    async def _keep_made(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            asked = self._asked
            try:
                await self._make()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or the database away: again shortly
                log.warning("partitions.consumer_not_made", durable=self.base, error=repr(exc)[:300])
                self._wanted.set()
                await asyncio.sleep(BACKOFF_S)
                continue
            self._made = asked
            async with self._done:
                self._done.notify_all()

    async def _make(self) -> None:
        """The consumer of the partitions held, made afresh from where each of them stands."""
        self._generation += 1  # what the consumer before delivers from now on is dropped (`next_batch`)
        self.acks.reset()
        old, self._pull = self._pull, None
        self._installed.clear()
        if old is not None:
            old.abandon()
            with contextlib.suppress(Exception):
                await old.stop()
        parts = dict(self.parts)
        name = consumer_name(self.base, parts) if parts else None
        if self.name is not None and self.name != name:  # renamed, or no partition left
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(self.stream, self.name)
            self.name = None
        if not parts:
            return
        info = await self._js.stream_info(self.stream)
        if info.created != self.stream_created:  # made again (NATS's store lost): its sequences start over
            self.stream_created = info.created
            for part in parts.values():
                part.started, part.outstanding, part.top = False, set(), 0
        fresh = [p for p, part in parts.items() if not part.started]
        for p, floor in zip(fresh, await asyncio.gather(*(self._floor_of(p) for p in fresh)), strict=True):
            parts[p].top = floor
        for part in parts.values():
            part.skip = floor_in_hand(part.outstanding, part.top, set())
        firsts = await asyncio.gather(*(self._first_after(p, part.skip) for p, part in parts.items()))
        start = min([seq for seq in firsts if seq is not None] + [info.state.last_seq + 1])
        if self._partitions is not None and len(parts) == self._partitions:
            filters = tuple(partition_filter_for(one, "*") for one in self.filters)
        else:
            filters = tuple(partition_filter_for(one, p) for p in sorted(parts) for one in self.filters)
        with contextlib.suppress(NotFoundError):  # ours, or left by a holder before
            await self._js.delete_consumer(self.stream, name)
        config = dataclasses.replace(self._config, durable_name=name, mem_storage=True, ack_policy=AckPolicy.ALL,
                                     deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
                                     **filtered(filters))
        made = await self._js.add_consumer(self.stream, config)
        pull = PullBatches(self._nc, self.stream, name, batch=self._batch, linger_s=self._linger_s)
        await pull.start()
        for part in parts.values():
            part.started = True
        self.name, self._delivered, self._pull = name, made.delivered.consumer_seq, pull
        self._installed.set()
        log.info("partitions.consumer_made", durable=name, partitions=len(parts), start=start)

    async def _floor_of(self, partition: int) -> int:
        """Where a partition just taken stands: its floor in Postgres; for a partition with none yet (its
        consumer was one per partition, from before floors were kept there), that consumer's own
        acknowledgement floor. A consumer of the partition alone, from before, is deleted: it would hold the
        log erasure back."""
        async with self._asking:
            floor = await self._floor(partition, self.stream_created)  # type: ignore[arg-type]
        alone = durable_for(self.base, partition)
        try:
            info = await self._js.consumer_info(self.stream, alone)
        except NotFoundError:
            return floor or 0
        if floor is None and info.config.filter_subjects is None:
            floor = info.ack_floor.stream_seq
        if alone != self.name:
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(self.stream, alone)
        return floor or 0

    async def _first_after(self, partition: int, floor: int) -> int | None:
        """The stream sequence of the partition's first message after `floor`, if any is stored yet."""
        try:
            msg = await self._js.get_msg(self.stream, seq=floor + 1, subject=partition_filter_for(">", partition),
                                         next=True)
        except NotFoundError:
            return None
        return msg.seq

    async def next_batch(self, wait_s: float = 1.0) -> list[Msg]:
        """What the consumer has brought of the partitions held (empty after about `wait_s` of nothing)."""
        pull, generation = self._pull, self._generation
        if pull is None:  # nothing held, or being made
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._installed.wait(), wait_s)
            return []
        try:
            msgs = await pull.next_batch()
        except Exception:
            if generation != self._generation:
                return []
            raise
        if generation != self._generation:  # made again meanwhile: the new one delivers these again
            return []
        if not msgs:
            if pull.last_status in GONE:
                await self._gone()
            return []
        delivered = in_sequence(self._delivered, [m.metadata.sequence.consumer for m in msgs])
        if delivered is None:  # made again from what is in hand: the lost one comes again, before the rest
            log.warning("partition.delivery_lost", durable=self.name, after=self._delivered)
            await self._remake()
            return []
        self._delivered = delivered
        got, handled = [], []
        for m in msgs:
            part, seq = self.parts.get(partition_of_subject(m.subject)), m.metadata.sequence.stream  # type: ignore[arg-type]
            self.acks.taken(seq, m)
            if part is None or seq <= part.skip:  # another replica's, or handled before the consumer was made
                handled.append(m)
                continue
            part.outstanding.add(seq)
            part.top = max(part.top, seq)
            got.append(m)
        if handled and (last := self.acks.settle(handled)) is not None:
            with contextlib.suppress(Exception):
                await last.ack()
        return got

    async def _gone(self) -> None:
        """The request was refused as if the consumer were gone: if it is (NATS restarted and forgot it, its
        state being in memory) and the partitions are still ours, make it again from their floors."""
        try:
            await self._js.consumer_info(self.stream, self.name)  # type: ignore[arg-type]
            return  # there: a refusal of the moment (a leader being elected)
        except NotFoundError:
            pass
        except Exception as exc:  # JetStream not ready yet: the next refusal asks again
            log.info("partitions.consumer_unknown", durable=self.name, error=repr(exc))
            return
        try:
            async with self._asking:
                still = [await self._holds(part.lease) for part in list(self.parts.values())]
        except Exception as exc:  # the database away: the next refusal asks again
            log.warning("partitions.remake_failed", durable=self.name, error=repr(exc))
            return
        if not all(still):
            return  # some taken over: the lease keeper removes them first
        for part in self.parts.values():
            part.started = False  # from the floors Postgres has
        log.warning("partitions.consumer_remade", durable=self.name)
        await self._remake()
