"""A consumer of domain events spread over partitions: one durable per partition, fed from the
partitions this replica holds (shared/leases.py), merged into one stream of batches.

Each partition's durable keeps its own position, so a partition moves between replicas with its
place in the stream. Taking one over starts with a reset of its durable (ADR-60: every message not
acknowledged is delivered again from the acknowledgement floor, in order), so the messages the old
holder had fetched and not finished come first, before anything newer of the same whistles.

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

import nats
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError

from shared.leases import Lease
from shared.pull import SETTLE_S, PullBatches
from shared.streams import filtered

log = structlog.get_logger("partitioned")



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


class _Part:
    def __init__(self, lease: Lease, pull: PullBatches):
        self.lease = lease
        self.pull = pull
        self.taken = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.delivered: int | None = None  # the consumer sequence of the last delivery taken (or of the reset)


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
                 batch: int, config: ConsumerConfig):
        self._nc, self._js = nc, js
        self.stream, self.base, self.filters = stream, base, filters
        self._batch = batch
        self._config = config  # every setting but the name and the filter
        self.parts: dict[int, _Part] = {}
        self._ready: deque[tuple[int, list[Msg]]] = deque()  # one chunk at most per partition, in arrival order
        self._arrived = asyncio.Event()

    def holds(self, partition: int | None) -> bool:
        return partition in self.parts

    async def add(self, lease: Lease) -> None:
        """Start fetching a partition just taken: its durable made (or found) and reset to its floor."""
        await self.remove(lease.partition)
        name = durable_for(self.base, lease.partition)
        config = dataclasses.replace(self._config, durable_name=name, **filtered(
            tuple(partition_filter_for(one, lease.partition) for one in self.filters)))
        try:
            info = await self._js.consumer_info(self.stream, name)
            if (info.config.max_deliver, info.config.ack_wait) != (config.max_deliver, config.ack_wait):
                await self._js.add_consumer(self.stream, config)
            # what the last holder fetched and did not finish comes again, first, in order
            delivered = (await self._js.reset_consumer(self.stream, name)).info.delivered.consumer_seq
        except NotFoundError:
            delivered = (await self._js.add_consumer(self.stream, config)).delivered.consumer_seq
        pull = PullBatches(self._nc, self.stream, name, batch=self._batch)
        await pull.start()
        part = self.parts[lease.partition] = _Part(lease, pull)
        part.delivered = delivered  # the first delivery must follow it
        part.task = asyncio.create_task(self._feed(part), name=f"{name}-feed")

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
            if partition in self.parts:  # its next messages may come now
                self.parts[partition].taken.set()
        return got
