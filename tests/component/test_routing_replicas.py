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
