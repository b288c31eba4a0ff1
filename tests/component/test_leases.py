"""Partition leases on a real Postgres: replicas share the partitions, a newcomer gets its share, a
dead replica's partitions are taken over, and a takeover waits for the old holder's transaction."""

from __future__ import annotations

import asyncio

import pytest

from shared.db import SHARED_MIGRATIONS, create_pool, ensure_schema, migrate
from shared.ids import utcnow
from shared.leases import Lease, LeaseKeeper, LeaseLost, fence_many
from tests.component.conftest import until

pytestmark = pytest.mark.asyncio

TTL, ROUND = 1.5, 0.2


class Replica:
    """A keeper and what it was told, as a service's consumers would be."""

    def __init__(self, pool, name: str, partitions: int = 16):
        self.consuming: dict[int, Lease] = {}
        self.keeper = LeaseKeeper(pool, name, partitions, gained=self._gained, lost=self._lost, ttl_s=TTL,
                                  round_s=ROUND)

    async def _gained(self, lease: Lease) -> None:
        self.consuming[lease.partition] = lease

    async def _lost(self, partition: int) -> None:
        self.consuming.pop(partition, None)

    def kill(self) -> None:
        """kill -9: no more heartbeats, nothing given back."""
        for task in (self.keeper._task, self.keeper._beat_task):
            assert task is not None
            task.cancel()


@pytest.fixture
async def pool(infra, request):
    schema = f"leases_{len(request.node.name)}"  # one per test (their names differ in length)
    await ensure_schema(infra["database_url"], schema)
    p = await create_pool(infra["database_url"], schema, max_size=6)
    await migrate(p, [SHARED_MIGRATIONS])
    yield p
    await p.close()


async def test_a_newcomer_gets_its_share_and_a_dead_replicas_partitions_are_taken(pool):
    a = Replica(pool, "a")
    a.keeper.start()
    assert await until(lambda: _count(a, 16), 5)
    b = Replica(pool, "b")
    b.keeper.start()
    assert await until(lambda: _split(a, b), 5 * TTL), (sorted(a.consuming), sorted(b.consuming))
    c = Replica(pool, "c")
    c.keeper.start()
    assert await until(lambda: _split(a, b, c), 5 * TTL), [sorted(r.consuming) for r in (a, b, c)]
    c.kill()
    # c's partitions free up once its heartbeat is TTL old; a and b take them at their next rounds
    assert await until(lambda: _split(a, b), 3 * TTL + 1), (sorted(a.consuming), sorted(b.consuming))
    await a.keeper.stop()
    assert await until(lambda: _count(b, 16), 3 * ROUND + 1)
    await b.keeper.stop()
    assert await pool.fetchval("SELECT count(*) FROM partition_leases WHERE holder IS NOT NULL") == 0


async def test_a_takeover_waits_for_the_old_holders_transaction_then_fences_it_out(pool):
    a = Replica(pool, "a", partitions=2)
    await a.keeper.round()
    old = a.keeper.held[0]
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await fence_many(conn, "a", [old], "d", {0: 1}, utcnow())  # a batch of partition 0 in flight
        await conn.execute("CREATE TABLE IF NOT EXISTS effects (n int)")
        await conn.execute("INSERT INTO effects VALUES (1)")
        # a is presumed dead (its heartbeat is old): b takes over, but must wait for that batch
        await pool.execute("UPDATE replicas SET seen_at = now() - interval '1 hour' WHERE replica = 'a'")
        b = Replica(pool, "b", partitions=2)
        takeover = asyncio.create_task(b.keeper.round())
        await asyncio.sleep(0.5)
        assert not takeover.done()
        await tx.commit()
    await asyncio.wait_for(takeover, 5)
    assert set(b.consuming) == {0, 1} and b.consuming[0].epoch == old.epoch + 1
    # a's next batch is refused: its work for partition 0 can no longer commit
    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(LeaseLost):
            await fence_many(conn, "a", [old], "d", {0: 2}, utcnow())
    # and a learns at its next round that the partitions are gone
    await a.keeper.round()
    assert a.consuming == {} and a.keeper.held == {}
    assert await pool.fetchval("SELECT count(*) FROM effects") == 1


async def _count(r: Replica, n: int) -> bool:
    return len(r.consuming) == n


async def _split(*replicas: Replica) -> bool:
    held = [set(r.consuming) for r in replicas]
    share = -(-16 // len(replicas))
    union = set().union(*held)
    return union == set(range(16)) and sum(map(len, held)) == 16 and all(len(h) <= share for h in held)
