"""Two intake replicas grouping whistles of one category at once (each its own partitions): one problem
class, every whistle in it once, and exactly one proactive whistle at the threshold."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.intake import app as intake_app
from services.intake.domain import load_catalogue
from services.intake.handlers import IntakeHandlers
from shared.contracts import Location, Source, Tier, WhistleBlown
from shared.db import SHARED_MIGRATIONS, create_pool, ensure_schema, migrate
from shared.ids import uuid7

pytestmark = pytest.mark.asyncio

MIGRATIONS = Path(intake_app.__file__).with_name("migrations")
T0 = datetime(2026, 3, 6, 1, 0, tzinfo=UTC)


@pytest.fixture
async def pool(infra):
    await ensure_schema(infra["database_url"], "intake_replicas")
    p = await create_pool(infra["database_url"], "intake_replicas", max_size=6)
    await migrate(p, [SHARED_MIGRATIONS, MIGRATIONS])
    yield p
    await p.close()


def blown(i: int) -> WhistleBlown:
    return WhistleBlown(occurred_at=T0 + timedelta(seconds=i), whistle_id=uuid7(), actor="dispatcher:community-7",
                        category="stairwell_dirty", description=f"stairwell rubbish {i}",
                        location=Location(building="9"), tier=Tier.routine, source=Source.grid_patrol)


async def test_two_replicas_build_one_class_and_raise_one_proactive_whistle(pool):
    catalogue = load_catalogue()
    a, b = IntakeHandlers(catalogue, class_threshold=5), IntakeHandlers(catalogue, class_threshold=5)
    whistles = [blown(i) for i in range(24)]
    async with pool.acquire() as conn:  # the whistles as the blow path saved them
        for w in whistles:
            await conn.execute("INSERT INTO whistles (id, category, description, location, tier, source, raised_by,"
                               " raised_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", w.whistle_id, w.category,
                               w.description, w.location.model_dump(), w.tier.value, w.source.value, w.actor,
                               w.occurred_at)

    async def run(handlers: IntakeHandlers, mine: list[WhistleBlown]) -> list:
        out = []
        for i in range(0, len(mine), 3):  # small batches, interleaving with the other replica's
            async with pool.acquire() as conn, conn.transaction():
                out += await handlers.group(conn, mine[i:i + 3], T0 + timedelta(minutes=1))
        return out

    events = sum(await asyncio.gather(run(a, whistles[0::2]), run(b, whistles[1::2])), [])
    classes = await pool.fetch("SELECT id, size, proactive_whistle_id FROM problem_classes")
    assert len(classes) == 1, classes
    assert classes[0]["size"] == 24
    assert await pool.fetchval("SELECT count(DISTINCT whistle_id) FROM class_members") == 24
    raised = [e for e in events if isinstance(e, WhistleBlown) and e.source == Source.proactive]
    assert len(raised) == 1 and classes[0]["proactive_whistle_id"] == raised[0].whistle_id
