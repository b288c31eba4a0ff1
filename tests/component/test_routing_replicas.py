"""Two routing replicas on one database: they decide from the same loads, so no member is ever given more
open summons than it may hold, and a registry edit made through one is seen by the other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.routing import app as routing_app
from services.routing.domain import load_rules
from services.routing.handlers import RoutingHandlers
from services.routing.registry import DEFAULT_REGISTRY, load_registry
from services.routing.responders import seed_registry
from services.routing.settings import RoutingSettings
from shared.contracts import SummonsIssued
from shared.db import SHARED_MIGRATIONS, create_pool, ensure_schema, migrate
from tests.unit.test_routing_domain import NOW, blown

pytestmark = pytest.mark.asyncio

MIGRATIONS = Path(routing_app.__file__).with_name("migrations")


@pytest.fixture
async def pool(infra):
    await ensure_schema(infra["database_url"], "routing_replicas")
    p = await create_pool(infra["database_url"], "routing_replicas", max_size=6)
    await migrate(p, [SHARED_MIGRATIONS, MIGRATIONS])
    await seed_registry(p, DEFAULT_REGISTRY)
    yield p
    await p.close()


async def replica(pool) -> RoutingHandlers:
    registry = load_registry()
    handlers = RoutingHandlers(registry, load_rules(registry), RoutingSettings().rules_file)
    await handlers._fresh_registry(pool)
    return handlers


async def test_two_replicas_never_overload_a_member(pool):
    a, b = await replica(pool), await replica(pool)
    # clothes drying: the nearest party member with the repairs skill leads; more whistles than the
    # members of building 1 can hold, so loads decide every choice
    batches = [[blown("clothes_drying", building="1") for _ in range(40)] for _ in range(12)]

    async def run(handlers: RoutingHandlers, mine: list[list]) -> list:
        issued = []
        for whistles in mine:
            async with pool.acquire() as conn, conn.transaction():
                issued += [e for e in await handlers.on_whistles_blown(conn, whistles, NOW)
                           if isinstance(e, SummonsIssued)]
        return issued

    got = await asyncio.gather(run(a, batches[0::2]), run(b, batches[1::2]))
    issued = got[0] + got[1]
    assert len(issued) == 480
    limits = {r.id: r.max_concurrent for r in a.registry.responders.values()}
    held = await pool.fetch("SELECT responder_id, count(*) AS n FROM assignments WHERE open GROUP BY responder_id")
    # members are chosen by load; a unit the rule names (the fallback section) takes whatever comes
    over = {r["responder_id"]: (r["n"], limits[r["responder_id"]]) for r in held
            if r["responder_id"].startswith("m-") and r["n"] > limits[r["responder_id"]]}
    assert over == {}
    members = [r for r in held if r["responder_id"].startswith("m-")]
    assert members and any(r["n"] == limits[r["responder_id"]] for r in members)  # some were filled up
    loads = {r["responder_id"]: r["open"] for r in await pool.fetch("SELECT responder_id, open FROM loads")}
    assert {r["responder_id"]: r["n"] for r in held} == {k: v for k, v in loads.items() if v}


async def test_a_resolved_summons_frees_its_member_for_every_replica(pool):
    a, b = await replica(pool), await replica(pool)
    async with pool.acquire() as conn, conn.transaction():
        first = next(e for e in await a.on_whistles_blown(conn, [blown("clothes_drying", building="2")], NOW)
                     if isinstance(e, SummonsIssued))
    before = await pool.fetchval("SELECT open FROM loads WHERE responder_id = $1", first.responder_id)
    async with pool.acquire() as conn, conn.transaction():
        await b._release(conn, first.summons_id)
        await b._release(conn, first.summons_id)  # a redelivery frees nothing more
    assert await pool.fetchval("SELECT open FROM loads WHERE responder_id = $1", first.responder_id) == before - 1


async def test_a_registry_edit_through_one_replica_is_seen_by_the_other(pool):
    a, b = await replica(pool), await replica(pool)
    member = next(r for r in a.registry.responders.values() if r.id.startswith("m-"))
    async with pool.acquire() as conn:
        data = await conn.fetchval("SELECT data FROM responders WHERE id = $1", member.id)
        await conn.execute("UPDATE responders SET data = $2 WHERE id = $1", member.id, {**data, "active": False})
    assert b.registry.responders[member.id].active
    await b.refresh_registry(type("Runtime", (), {"pool": pool})())
    assert not b.registry.responders[member.id].active


async def test_a_decision_reads_only_the_loads_changed_since_the_last_and_sees_every_replicas_change(pool):
    a, b = await replica(pool), await replica(pool)
    async with pool.acquire() as conn:  # a district's worth of members summoned before (each row numbered)
        await conn.execute("INSERT INTO loads (responder_id, open, last_tick)"
                           " SELECT 'x-' || i, i % 3, i FROM generate_series(1, 5000) i")
    async with pool.acquire() as conn, conn.transaction():
        await b._book(conn)  # the first read takes every row
    assert len(b.loads.load) >= 5000 and b.loads.tick >= 5000
    async with pool.acquire() as conn, conn.transaction():
        first = next(e for e in await a.on_whistles_blown(conn, [blown("clothes_drying", building="2")], NOW)
                     if isinstance(e, SummonsIssued))
    committed = await pool.fetchval("SELECT open FROM loads WHERE responder_id = $1", first.responder_id)
    # what b has not read yet is exactly a's change: the next read brings that row, not 5,000
    assert await pool.fetchval("SELECT count(*) FROM loads WHERE changed > $1", b.loads.seen) == 1
    async with pool.acquire() as conn, conn.transaction():
        book = await b._book(conn)
    assert book.load[first.responder_id] == committed == b.loads.load[first.responder_id]
    assert await pool.fetchval("SELECT count(*) FROM loads WHERE changed > $1", b.loads.seen) == 0
    async with pool.acquire() as conn, conn.transaction():  # a release through a shows in b too
        await a._release(conn, first.summons_id)
    async with pool.acquire() as conn, conn.transaction():
        book = await b._book(conn)
    assert book.load[first.responder_id] == committed - 1


async def test_a_decision_rolled_back_leaves_nothing_in_the_loads_a_replica_keeps(pool):
    a = await replica(pool)
    async with pool.acquire() as conn, conn.transaction():
        await a._book(conn)
    kept = dict(a.loads.load)

    class Undone(Exception):
        pass

    with pytest.raises(Undone):  # a whole batch rolled back, after a decision read its own writes
        async with pool.acquire() as conn, conn.transaction():
            await a.on_whistles_blown(conn, [blown("clothes_drying", building="2") for _ in range(3)], NOW)
            mine = await a._book(conn)
            assert sum(mine.load.values()) == sum(kept.values()) + 3  # its own book sees its summons
            raise Undone
    assert a.loads.load == kept
    async with pool.acquire() as conn, conn.transaction():
        outer = await a.on_whistles_blown(conn, [blown("clothes_drying", building="2")], NOW)
        try:  # one message of a batch retried alone, in a savepoint, fails after reading its own writes
            async with conn.transaction():
                await a.on_whistles_blown(conn, [blown("clothes_drying", building="2")], NOW)
                await a._book(conn)
                raise Undone
        except Undone:
            pass
        await a._book(conn)  # the batch's own first decision is still uncommitted: nothing kept yet
        assert a.loads.load == kept
    async with pool.acquire() as conn, conn.transaction():
        book = await a._book(conn)
    held = {r["responder_id"]: r["open"] for r in await pool.fetch("SELECT responder_id, open FROM loads")}
    assert a.loads.load == held and dict(book.load) == held
    lead = next(e for e in outer if isinstance(e, SummonsIssued))
    assert held[lead.responder_id] == kept.get(lead.responder_id, 0) + 1
