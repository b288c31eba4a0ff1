"""Partition leases: each partition of a service held by exactly one of its replicas at a time.

The leases live in Postgres, beside the work they guard, not in NATS KV: a batch's transaction reads
its partition's lease row FOR SHARE (`fence_many`), so a takeover (which updates that row) waits until
the old holder's transactions in flight have committed, and every later transaction of the old
holder finds the row changed and rolls back. A KV lease with a TTL cannot fence a database commit:
a holder paused past its TTL would still commit after the new holder began.

A replica is alive while its heartbeat (`replicas.seen_at`) is fresher than `ttl_s`; a lease is good
while its holder is alive, so a heartbeat renews every lease of a replica in one statement and the
lease rows change only when a partition changes hands. Each round a replica takes its fair share
(partitions / live replicas, rounded up), preferring the partitions it ranks highest (rendezvous
hashing: a replica that joins or leaves moves few partitions), and gives back what is beyond it.
A replica that joins gets its share within two rounds; a dead one's partitions are taken once its
heartbeat is `ttl_s` old, at the next round of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger("leases")

GAIN_TIMEOUT_S = 30.0  # starting (or stopping) the consumers of one partition; past it, given back


class LeaseLost(Exception):
    """The partition changed hands: this replica must not commit work for it."""


@dataclass(frozen=True)
class Lease:
    partition: int
    epoch: int


# --- pure -----------------------------------------------------------------------------------------


def fair_share(partitions: int, live: int) -> int:
    """How many partitions one of `live` replicas should hold."""
    return math.ceil(partitions / max(live, 1))


def preference(replica: str, partitions: int) -> list[int]:
    """The partitions in the order this replica wants them (rendezvous hashing: stable, and different
    for each replica, so replicas rarely reach for the same free partition)."""
    score = lambda p: hashlib.blake2b(f"{replica}/{p}".encode(), digest_size=8).digest()  # noqa: E731
    return sorted(range(partitions), key=score, reverse=True)


def rebalance(held: Iterable[int], free: Iterable[int], share: int, ranked: list[int]) -> tuple[list[int], list[int]]:
    """(to give back, to take): keep the best-ranked `share` of what is held, fill up from what is free."""
    rank = {p: i for i, p in enumerate(ranked)}
    mine = sorted(held, key=rank.__getitem__)
    if len(mine) > share:
        return mine[share:], []
    return [], sorted(free, key=rank.__getitem__)[: share - len(mine)]


# --- Postgres -------------------------------------------------------------------------------------

_HEARTBEAT = (
    "WITH me AS (INSERT INTO replicas (replica, seen_at) VALUES ($1, now())"
    " ON CONFLICT (replica) DO UPDATE SET seen_at = now()),"
    " gone AS (DELETE FROM replicas WHERE seen_at < now() - interval '1 hour')"
    " SELECT 1 + (SELECT count(*) FROM replicas WHERE seen_at > now() - make_interval(secs => $2)"
    "              AND replica <> $1) AS live,"
    " (SELECT coalesce(array_agg(partition ORDER BY partition), '{}') FROM partition_leases l WHERE holder = $1)"
    "   AS held,"
    " (SELECT coalesce(array_agg(epoch ORDER BY partition), '{}') FROM partition_leases l WHERE holder = $1)"
    "   AS epochs,"
    " (SELECT coalesce(array_agg(p ORDER BY p), '{}') FROM generate_series(0, $3 - 1) AS p"
    "   LEFT JOIN partition_leases l ON l.partition = p LEFT JOIN replicas r ON r.replica = l.holder"
    "   WHERE l.holder IS NULL OR r.replica IS NULL"
    "      OR (r.seen_at <= now() - make_interval(secs => $2) AND l.holder <> $1)) AS free"
)

# a partition is taken only if it is still free when the row is locked (another replica may have
# been quicker); the epoch moves, which is what fences the previous holder's late transactions
_TAKE = (
    "INSERT INTO partition_leases AS l (partition, holder, epoch, changed_at)"
    " SELECT p, $1, 1, now() FROM unnest($2::int[]) AS p"
    " ON CONFLICT (partition) DO UPDATE SET holder = $1, epoch = l.epoch + 1, changed_at = now()"
    " WHERE l.holder IS NULL OR NOT EXISTS (SELECT FROM replicas r WHERE r.replica = l.holder"
    "   AND r.seen_at > now() - make_interval(secs => $3))"
    " RETURNING partition, epoch"
)

_GIVE_BACK = ("UPDATE partition_leases SET holder = NULL, changed_at = now()"
              " WHERE partition = $1 AND holder = $2 AND epoch = $3")

_BEAT = ("INSERT INTO replicas (replica, seen_at) VALUES ($1, now())"
         " ON CONFLICT (replica) DO UPDATE SET seen_at = now()")

# the lease check and the consumer's new floors in one round trip; floors only move forward (two
# overlapping batches may commit in either order), and in partition order (no deadlock between them)
_FENCE_AND_FLOORS = (
    "WITH held AS (SELECT 1 FROM partition_leases l JOIN unnest($2::int[], $3::bigint[]) AS u(p, e)"
    " ON l.partition = u.p AND l.epoch = u.e WHERE l.holder = $1 FOR SHARE OF l),"
    " moved AS (INSERT INTO consumer_floors AS f (durable, partition, stream_seq, stream_created)"
    " SELECT $4, p, s, $6 FROM unnest($2::int[], $5::bigint[]) AS u(p, s) ORDER BY p"
    " ON CONFLICT (durable, partition) DO UPDATE SET stream_created = excluded.stream_created,"
    " stream_seq = CASE WHEN f.stream_created = excluded.stream_created"
    " THEN greatest(f.stream_seq, excluded.stream_seq) ELSE excluded.stream_seq END)"
    " SELECT count(*) FROM held"
)

_FLOOR = "SELECT stream_seq FROM consumer_floors WHERE durable = $1 AND partition = $2 AND stream_created = $3"
_HOLDS = "SELECT true FROM partition_leases WHERE partition = $1 AND holder = $2 AND epoch = $3"


async def fence_many(conn: asyncpg.Connection, replica: str, leases: Iterable[Lease], durable: str,
                     floors: dict[int, int], stream_created: datetime) -> None:
    """Inside a batch's transaction, at its end: LeaseLost unless `replica` still holds every lease its
    messages come under (the rows read FOR SHARE: until it commits, nobody can take them over); and
    `durable`'s floors in those partitions (partition → stream sequence, of the stream made at
    `stream_created`) written, in the same round trip."""
    leases = sorted(set(leases), key=lambda x: x.partition)
    partitions = [x.partition for x in leases]
    if leases and await conn.fetchval(_FENCE_AND_FLOORS, replica, partitions, [x.epoch for x in leases], durable,
                                      [floors[p] for p in partitions], stream_created) != len(leases):
        raise LeaseLost(f"a partition of {partitions} is no longer held by {replica}")


async def floor_of(pool: asyncpg.Pool, durable: str, partition: int, stream_created: datetime) -> int | None:
    """The stream sequence up to which `durable` has handled `partition` of the stream made at
    `stream_created` (None: nothing recorded of that stream)."""
    return await pool.fetchval(_FLOOR, durable, partition, stream_created)


async def holds(pool: asyncpg.Pool, replica: str, lease: Lease) -> bool:
    """Whether `replica` still holds `lease` (outside a batch: no lock, an answer of the moment)."""
    return bool(await pool.fetchval(_HOLDS, lease.partition, replica, lease.epoch))


class LeaseKeeper:
    """Keeps this replica's fair share of `partitions`: `gained(lease)` when it takes one (start
    consuming it), `lost(partition)` before giving one back or on finding it taken (stop consuming it
    and finish what is in flight; a transaction that commits late is refused by the fence anyway)."""

    def __init__(self, pool: asyncpg.Pool, replica: str, partitions: int, *,
                 gained: Callable[[Lease], Awaitable[None]], lost: Callable[[int], Awaitable[None]],
                 ttl_s: float = 6.0, round_s: float = 1.5):
        self.pool, self.replica, self.partitions = pool, replica, partitions
        self.gained, self.lost = gained, lost
        self.ttl_s, self.round_s = ttl_s, round_s
        self.held: dict[int, Lease] = {}
        self.live = 0
        self.ranked = preference(replica, partitions)
        self._task: asyncio.Task | None = None
        self._beat_task: asyncio.Task | None = None
        self.first_round = asyncio.Event()  # set once the first look is over (whatever it found)
        self._last_ok = 0.0  # loop time of the last heartbeat that reached Postgres

    def start(self) -> None:
        # the heartbeat has a task of its own: starting or stopping consumers (slow on a busy cluster)
        # must never make this replica look dead to the others
        self._task = asyncio.create_task(self._run(), name=f"leases-{self.replica}")
        self._beat_task = asyncio.create_task(self._beat(), name=f"heartbeat-{self.replica}")

    async def stop(self) -> None:
        """Give every partition back (consumers stopped first), so the others take them at once."""
        for task in (self._task, self._beat_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        held = sorted(self.held.values(), key=lambda x: x.partition)
        await self._each(self.lost, [lease.partition for lease in held], "stop")
        for lease in held:
            with contextlib.suppress(Exception):
                await self.pool.execute(_GIVE_BACK, lease.partition, self.replica, lease.epoch)
        self.held.clear()
        with contextlib.suppress(Exception):
            await self.pool.execute("DELETE FROM replicas WHERE replica = $1", self.replica)

    async def _beat(self) -> None:
        while True:
            try:
                await self.pool.execute(_BEAT, self.replica)
                self._last_ok = asyncio.get_running_loop().time()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Postgres away: the fence refuses our commits meanwhile
                log.info("leases.beat_failed", replica=self.replica, error=repr(exc)[:200])
            await asyncio.sleep(self.round_s)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_ok = loop.time()
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("leases.round_failed", replica=self.replica, error=repr(exc)[:200])
            finally:
                self.first_round.set()
                if self.held and loop.time() - self._last_ok > self.ttl_s:
                    # our heartbeat is stale: others may have taken everything; stop before they start
                    await self._each(self.lost, sorted(self.held), "stale")
                    self.held.clear()
            await asyncio.sleep(self.round_s)

    async def _each(self, fn: Callable[[Any], Awaitable[None]], items: list, why: str) -> list:
        """`fn` on every item at once (consumers made or dropped on every partition together), each given
        GAIN_TIMEOUT_S; the items it failed on."""
        results = await asyncio.gather(*(asyncio.wait_for(fn(x), GAIN_TIMEOUT_S) for x in items),
                                       return_exceptions=True)
        failed = []
        for item, result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("leases.callback_failed", replica=self.replica, why=why, item=str(item),
                            error=repr(result)[:200])
                failed.append(item)
        return failed

    async def round(self) -> None:
        """One look: notice partitions taken from us, give back beyond the share, take free ones."""
        row = await self.pool.fetchrow(_HEARTBEAT, self.replica, self.ttl_s, self.partitions)
        self._last_ok = asyncio.get_running_loop().time()
        self.live = row["live"]
        owned = {p: Lease(p, e) for p, e in zip(row["held"], row["epochs"], strict=True) if p < self.partitions}
        taken = sorted(set(self.held) - set(owned))
        for p in taken:
            log.warning("leases.taken_from_us", replica=self.replica, partition=p)
            del self.held[p]
        await self._each(self.lost, taken, "taken")
        # ours from before a restart of this replica under the same name
        await self._gain([lease for p, lease in owned.items() if p not in self.held])
        give, take = rebalance(self.held, row["free"], fair_share(self.partitions, self.live), self.ranked)
        if give:
            await self._each(self.lost, give, "rebalance")
            for p in give:
                lease = self.held.pop(p)
                await self.pool.execute(_GIVE_BACK, p, self.replica, lease.epoch)
                log.info("leases.given_back", replica=self.replica, partition=p, live=self.live)
        if take:
            leases = [Lease(r["partition"], r["epoch"]) for r in await self.pool.fetch(_TAKE, self.replica, take,
                                                                                     self.ttl_s)]
            for lease in leases:
                log.info("leases.taken", replica=self.replica, partition=lease.partition, epoch=lease.epoch,
                         live=self.live)
            await self._gain(leases)

    async def _gain(self, leases: list[Lease]) -> None:
        """Start consuming them; one that cannot start now goes back, to be taken again."""
        for lease in leases:
            self.held[lease.partition] = lease
        failed = set(await self._each(self.gained, leases, "gained"))
        for lease in failed:
            self.held.pop(lease.partition, None)
            with contextlib.suppress(Exception):
                await self.lost(lease.partition)
            await self.pool.execute(_GIVE_BACK, lease.partition, self.replica, lease.epoch)
