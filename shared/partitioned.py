"""A consumer of domain events spread over partitions: one durable per partition, fed from the
partitions this replica holds (shared/leases.py), merged into one stream of batches.

Where a partition's durable stands is kept in Postgres, not by NATS: each batch's transaction writes
the consumer's floor for the partitions it touches (the stream sequence up to which every message of
the partition is handled: `floors()`), in the statement that checks the leases (`fence_many`). So the
position commits with the work or not at all, and the NATS consumer itself can live in memory
(`mem_storage`): a file-backed durable rewrites its state file up to ten times a second, and sixteen
partitions times every service's durables made that most of NATS's CPU (measured: 61% of it, in
`consumerFileStore.flushLoop`). Taking a partition (or finding its consumer gone after NATS
restarted) makes its consumer afresh, starting just after the floor: what the last holder fetched and
did not commit comes again, first, in order (the inbox drops what was handled already).

One pull request at a time per partition, each for a whole batch (a request that stays open while
messages come costs the server far less than one request per handful: measured, sixteen partitions
asking for a sixteenth each took NATS from 3.3 to 8.7 s of CPU for 10,000 whistles), and what the
partitions bring at the same moment is handed to the runtime as one batch (one transaction), up to
the batch size in whole chunks. A partition fetches again only once its last chunk was taken, so its
messages reach the runtime in stream order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime

import nats
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from shared.leases import Lease
from shared.pull import SETTLE_S, PullBatches
from shared.streams import filtered

log = structlog.get_logger("partitioned")

# a pull request's refusals that mean its consumer may be gone: no responders, not found, deleted
GONE = frozenset({"503", "404", "409"})


def partition_of_subject(subject: str) -> int | None:
    """The partition token of a stored event subject (`<type>.<verb>.<p>.<whistle_id>`), else None."""
    tokens = subject.split(".")
    return int(tokens[2]) if len(tokens) == 4 and tokens[2].isdigit() else None


def partition_filter_for(subject: str, partition: int) -> str:
    """A consumer's subject (`whistle.blown`, `summons.>`, `>`) narrowed to one partition."""
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


class _Part:
    def __init__(self, lease: Lease, pull: PullBatches):
        self.lease = lease
        self.pull = pull
        self.taken = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.delivered: int | None = None  # the consumer sequence of the last delivery taken (or of the reset)
        self.outstanding: set[int] = set()  # stream sequences taken and not yet settled (acked)
        self.top = 0  # the highest stream sequence taken


def in_sequence(last: int | None, sequences: list[int]) -> int | None:
    """The last of `sequences` when they follow `last` one by one (None: anything may come first); None
    when a delivery is missing. Only this replica pulls from a partition's durable, so every delivery
    comes here, and a gap is one lost on the way (a NATS node died with it): the messages after it must
    not be handled before it."""
    for seq in sequences:
        if last is not None and seq != last + 1:
            return None
        last = seq
    return last


class PartitionedPull:
    """`next_batch()` like PullBatches, over the durables of the partitions added so far."""

    def __init__(self, nc: nats.NATS, js: JetStreamContext, stream: str, base: str, filters: tuple[str, ...], *,
                 batch: int, config: ConsumerConfig, floor: Callable[[int, datetime], Awaitable[int | None]],
                 holds: Callable[[Lease], Awaitable[bool]]):
        self._nc, self._js = nc, js
        self._floor, self._holds = floor, holds  # the partition's floor in Postgres; whether a lease still stands
        self.stream_created: datetime | None = None  # the stream's (its sequences are of that one stream)
        self._asking = asyncio.Semaphore(2)  # sixteen partitions taken at once ask Postgres two at a time (the
        # pool would otherwise open every connection it may, in every service and replica at once)
        self.stream, self.base, self.filters = stream, base, filters
        self._batch = batch
        self._config = config  # every setting but the name and the filter
        self.parts: dict[int, _Part] = {}
        self._ready: deque[tuple[int, list[Msg]]] = deque()  # one chunk at most per partition, in arrival order
        self._arrived = asyncio.Event()

    def holds(self, partition: int | None) -> bool:
        return partition in self.parts

    async def add(self, lease: Lease) -> None:
        """Start fetching a partition just taken, from its floor."""
        await self.remove(lease.partition)
        delivered = await self._make(lease.partition)
        pull = PullBatches(self._nc, self.stream, durable_for(self.base, lease.partition), batch=self._batch)
        await pull.start()
        part = self.parts[lease.partition] = _Part(lease, pull)
        part.delivered = delivered  # the first delivery must follow it
        part.task = asyncio.create_task(self._feed(part), name=f"{durable_for(self.base, lease.partition)}-feed")

    async def _make(self, partition: int) -> int:
        """The partition's consumer made afresh, in memory, starting just after the floor; its consumer
        sequence to start from. A durable with nothing in Postgres yet (made before floors were kept
        there) starts from its own acknowledgement floor."""
        name = durable_for(self.base, partition)
        # a floor is of one stream: one made again (NATS's store lost) starts its sequences over
        self.stream_created = (await self._js.stream_info(self.stream)).created
        async with self._asking:
            floor = await self._floor(partition, self.stream_created)
        try:
            info = await self._js.consumer_info(self.stream, name)
        except NotFoundError:
            info = None
        if info is not None:
            if floor is None:
                floor = info.ack_floor.stream_seq
            await self._js.delete_consumer(self.stream, name)
        config = dataclasses.replace(
            self._config, durable_name=name, mem_storage=True, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=(floor or 0) + 1,
            **filtered(tuple(partition_filter_for(one, partition) for one in self.filters)))
        return (await self._js.add_consumer(self.stream, config)).delivered.consumer_seq

    def floors(self, partitions: set[int], settling: list[Msg]) -> dict[int, int]:
        """The floor of each of `partitions` held here once `settling` (handled in the same transaction) is."""
        done: dict[int | None, set[int]] = {}
        for m in settling:
            done.setdefault(partition_of_subject(m.subject), set()).add(m.metadata.sequence.stream)
        return {p: floor_in_hand(part.outstanding, part.top, done.get(p, set()))
                for p in partitions if (part := self.parts.get(p)) is not None}

    def settle(self, msgs: list[Msg]) -> None:
        """These are acked: they no longer hold their partition's floor down."""
        for m in msgs:
            part = self.parts.get(partition_of_subject(m.subject))  # type: ignore[arg-type]
            if part is not None:
                part.outstanding.discard(m.metadata.sequence.stream)

    async def remove(self, partition: int) -> None:
        """Stop fetching a partition given back or taken; its messages not yet taken are dropped (the
        next holder's reset delivers them again)."""
        part = self.parts.pop(partition, None)
        if part is None:
            return
        if part.task is not None:
            part.task.cancel()
            await asyncio.wait({part.task}, timeout=2.0)
        await part.pull.halt()  # before the partition is given back (and its next holder resets it)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(part.pull.stop(), 2.0)
        self._ready = deque(chunk for chunk in self._ready if chunk[0] != partition)

    async def stop(self) -> None:
        for p in list(self.parts):
            await self.remove(p)

    async def start(self) -> None:  # the same life as a PullBatches
        return None

    async def _feed(self, part: _Part) -> None:
        while True:
            try:
                msgs = await part.pull.next_batch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # disconnected: nats-py reconnects; ask again shortly
                log.warning("partition.fetch_failed", durable=durable_for(self.base, part.lease.partition),
                            error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            if not msgs:
                if part.pull.last_status in GONE:
                    await self._remake(part)
                continue
            delivered = in_sequence(part.delivered, [m.metadata.sequence.consumer for m in msgs])
            if delivered is None:
                await self._resync(part)
                continue
            part.delivered = delivered
            part.taken.clear()
            self._ready.append((part.lease.partition, msgs))
            self._arrived.set()
            await part.taken.wait()

    async def _remake(self, part: _Part) -> None:
        """The request was refused as if the consumer were gone: if it is (NATS restarted and forgot it, its
        state being in memory) and the partition is still ours, make it again from the floor."""
        name = durable_for(self.base, part.lease.partition)
        try:
            await self._js.consumer_info(self.stream, name)
            return  # there: a refusal of the moment (a leader being elected)
        except NotFoundError:
            pass
        except Exception as exc:  # JetStream not ready yet: the next refusal asks again
            log.info("partition.consumer_unknown", durable=name, error=repr(exc))
            return
        try:
            async with self._asking:
                still = await self._holds(part.lease)
            if not still:
                return  # taken over: the lease keeper stops this partition
            await part.pull.halt()
            part.delivered = await self._make(part.lease.partition)
            part.pull.last_status = None
            log.warning("partition.consumer_remade", durable=name)
        except Exception as exc:  # the database or NATS away: the next refusal tries again
            log.warning("partition.remake_failed", durable=name, error=repr(exc))

    async def _resync(self, part: _Part) -> None:
        """A delivery was lost: back to the acknowledgement floor (ADR-60's reset), so what follows it comes
        again after it, in order (what was handled already is known by the inbox, or idempotent).
        The request in flight ends first and what it brought is dropped: the server delivers from the
        floor as soon as it has reset, and those deliveries must not be mistaken for the stale ones
        (dropping them lost them until their ack wait, behind the messages after them)."""
        name = durable_for(self.base, part.lease.partition)
        log.warning("partition.delivery_lost", durable=name, after=part.delivered)
        await part.pull.halt()
        while True:  # nothing is fetched until it is done
            try:
                part.delivered = (await self._js.reset_consumer(self.stream, name)).info.delivered.consumer_seq
                return
            except Exception as exc:  # NATS away, the durable's leader being elected
                log.warning("partition.reset_failed", durable=name, error=repr(exc))
                await asyncio.sleep(0.5)

    async def next_batch(self, wait_s: float = 1.0) -> list[Msg]:
        """What the partitions have brought (empty after `wait_s` of nothing); each of them then
        fetches again."""
        if not self._ready:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait_s)
        # the other partitions' messages of the same moment join the batch: a pause ends it, as in a
        # single pull (without it a burst spread over sixteen partitions became batches a third the size)
        while self._ready and sum(len(msgs) for _, msgs in self._ready) < self._batch:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), SETTLE_S)
            except TimeoutError:
                break
        got: list[Msg] = []
        while self._ready and (not got or len(got) + len(self._ready[0][1]) <= self._batch):
            partition, msgs = self._ready.popleft()
            got += msgs
            if (part := self.parts.get(partition)) is not None:
                for m in msgs:
                    part.outstanding.add(m.metadata.sequence.stream)
                part.top = max(part.top, msgs[-1].metadata.sequence.stream)
                part.taken.set()  # its next messages may come now
        return got
