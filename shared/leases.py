"""Partition leases: each partition of a service held by exactly one of its replicas at a time.

The leases live in Postgres, beside the work they guard, not in NATS KV: a batch's transaction reads
its partition's lease row FOR SHARE (`fence`), so a takeover (which updates that row) waits until
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

import asyncpg
import structlog

log = structlog.get_logger("leases")


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
    " SELECT (SELECT count(*) FROM replicas WHERE seen_at > now() - make_interval(secs => $2)"
    "          OR replica = $1) AS live,"
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

_FENCE = "SELECT 1 FROM partition_leases WHERE partition = $1 AND holder = $2 AND epoch = $3 FOR SHARE"


async def fence(conn: asyncpg.Connection, replica: str, lease: Lease) -> None:
    """Inside a transaction: raise LeaseLost unless `replica` still holds `lease`; until the transaction
    ends, nobody can take the partition over."""
    if await conn.fetchval(_FENCE, lease.partition, replica, lease.epoch) is None:
        raise LeaseLost(f"partition {lease.partition} (epoch {lease.epoch}) is no longer held by {replica}")


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
        self._last_ok = 0.0  # loop time of the last round that reached Postgres

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"leases-{self.replica}")

    async def stop(self) -> None:
        """Give every partition back (consumers stopped first), so the others take them at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        for lease in sorted(self.held.values(), key=lambda x: x.partition):
            await self.lost(lease.partition)
            with contextlib.suppress(Exception):
                await self.pool.execute(_GIVE_BACK, lease.partition, self.replica, lease.epoch)
        self.held.clear()
        with contextlib.suppress(Exception):
            await self.pool.execute("DELETE FROM replicas WHERE replica = $1", self.replica)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_ok = loop.time()
        while True:
            try:
                await self.round()
                self._last_ok = loop.time()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Postgres away: the fence refuses our commits meanwhile
                log.warning("leases.round_failed", replica=self.replica, error=repr(exc)[:200])
                if self.held and loop.time() - self._last_ok > self.ttl_s:
                    # our heartbeat is stale: others may have taken everything; stop before they start
                    for p in sorted(self.held):
                        await self.lost(p)
                    self.held.clear()
            await asyncio.sleep(self.round_s)

    async def round(self) -> None:
        """One heartbeat: notice partitions taken from us, give back beyond the share, take free ones."""
        row = await self.pool.fetchrow(_HEARTBEAT, self.replica, self.ttl_s, self.partitions)
        self.live = row["live"]
        owned = {p: Lease(p, e) for p, e in zip(row["held"], row["epochs"], strict=True) if p < self.partitions}
        for p in sorted(set(self.held) - set(owned)):
            log.warning("leases.taken_from_us", replica=self.replica, partition=p)
            del self.held[p]
            await self.lost(p)
        for p, lease in owned.items():
            if p not in self.held:  # ours from before a restart of this replica with the same name
                self.held[p] = lease
                await self.gained(lease)
        give, take = rebalance(self.held, row["free"], fair_share(self.partitions, self.live), self.ranked)
        for p in give:
            lease = self.held.pop(p)
            await self.lost(p)
            await self.pool.execute(_GIVE_BACK, p, self.replica, lease.epoch)
            log.info("leases.given_back", replica=self.replica, partition=p, live=self.live)
        if take:
            for r in await self.pool.fetch(_TAKE, self.replica, take, self.ttl_s):
                lease = Lease(r["partition"], r["epoch"])
                self.held[lease.partition] = lease
                log.info("leases.taken", replica=self.replica, partition=lease.partition, epoch=lease.epoch,
                         live=self.live)
                await self.gained(lease)
