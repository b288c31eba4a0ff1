"""Intake's group commit on a real (embedded) Postgres: concurrent blows share transactions, keys hold
within and across batches, and a request the database refuses does not take its batch down with it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from services.cli.embedded import EmbeddedPostgres
from services.intake.batcher import BlowBatcher
from services.intake.blows import Blow, check
from services.intake.domain import load_catalogue
from shared.contracts import Actor, Command
from shared.db import SHARED_MIGRATIONS, Queued, create_pool, migrate
from shared.ids import utcnow

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "intake" / "migrations"
CATALOGUE = load_catalogue()
DISPATCHER = Actor(role="dispatcher", id="d1")
BODY = {"category": "noise", "description": "西门夜里施工 / building works at night", "location": {"building": "3"}}


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("intake-batcher"))
    try:
        yield pg.uri
    finally:
        pg.stop()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "intake")
    await migrate(pool, [SHARED_MIGRATIONS, MIGRATIONS])
    yield pool
    await pool.close()


class HandedRows:
    """Stands in for the leading outbox relay: records each commit's hand-off."""

    leading = True

    def __init__(self) -> None:
        self.handoffs: list[list[Queued]] = []

    def handoff(self, rows: list[Queued]) -> None:
        self.handoffs.append(rows)


@pytest.fixture
async def batcher(pool: asyncpg.Pool) -> AsyncIterator[tuple[BlowBatcher, list[list[Queued]]]]:
    relay = HandedRows()
    b = BlowBatcher(CATALOGUE, linger_s=0.005)
    b.start(pool, relay)
    yield b, relay.handoffs
    await b.stop()


def command(key: str | None = None, **changes) -> Command:
    return Command(actor=DISPATCHER, payload={**BODY, **changes, "idempotency_key": key})


async def counts(pool: asyncpg.Pool, marker: str) -> tuple[int, int]:
    """Whistles with the marker in their description, and outbox rows for them."""
    whistles = await pool.fetchval("SELECT count(*) FROM whistles WHERE description LIKE '%' || $1 || '%'", marker)
    outbox = await pool.fetchval("SELECT count(*) FROM outbox WHERE convert_from(body, 'UTF8') LIKE '%' || $1 || '%'",
                                 marker)
    return whistles, outbox


async def test_concurrent_blows_are_written_together_and_keys_give_one_whistle(pool, batcher) -> None:
    b, handoffs = batcher
    marker = "batch-keys"
    plan = [command(description=f"{marker} plain {i}") for i in range(30)]
    plan += [command("k-same", description=f"{marker} keyed")] * 4
    plan += [command("k-other", description=f"{marker} first body"), command("k-other", description=f"{marker} another")]
    replies = await asyncio.gather(*(b.blow(c) for c in plan))
    assert all(r.ok for r in replies[:30]) and len({r.data["id"] for r in replies[:30]}) == 30
    same = replies[30:34]
    assert sum(1 for r in same if not r.data.get("replayed")) == 1 and len({r.data["id"] for r in same}) == 1
    assert replies[34].ok and replies[35].refusal.status == 409
    assert await counts(pool, marker) == (32, 32)  # one whistle and one whistle.blown per new whistle
    # all were queued before the writer woke: one transaction wrote every new whistle, one wake for the relay
    writers = await pool.fetchval("SELECT count(DISTINCT xmin::text) FROM whistles"
                                  " WHERE description LIKE '%' || $1 || '%'", marker)
    assert writers == 1 and len(handoffs) == 1
    # the relay is handed exactly the committed rows, with their seqs, to publish from memory
    stored = {r["seq"]: (r["subject"], bytes(r["body"]), r["msg_id"]) for r in await pool.fetch(
        "SELECT seq, subject, body, msg_id FROM outbox WHERE convert_from(body, 'UTF8') LIKE '%' || $1 || '%'", marker)}
    assert {q.seq: (q.subject, q.body, q.headers["Nats-Msg-Id"]) for q in handoffs[0]} == stored

    again = await b.blow(command("k-same", description=f"{marker} keyed"))  # a later batch replays it too
    assert again.data == {"id": same[0].data["id"], "status": "open", "replayed": True}
    assert (await b.blow(command("k-same", description="changed"))).refusal.code == "idempotency_conflict"
    assert await counts(pool, marker) == (32, 32)


async def test_a_blow_the_database_refuses_fails_alone(pool, batcher) -> None:
    b, handoffs = batcher
    marker = "batch-fallback"
    taken = check(command(description=f"{marker} first"), CATALOGUE, utcnow())
    assert isinstance(taken, Blow) and (await b.submit(taken)).ok
    # the same whistle id again: the batch's insert fails, so each request is retried under its own savepoint
    clash = dataclasses.replace(check(command(description=f"{marker} clash"), CATALOGUE, utcnow()),
                                whistle=taken.whistle)
    others = [check(command(description=f"{marker} other {i}"), CATALOGUE, utcnow()) for i in range(5)]
    replies = await asyncio.gather(*(b.submit(x) for x in [others[0], clash, *others[1:]]))
    assert replies[1].refusal.status == 503
    assert all(r.ok for i, r in enumerate(replies) if i != 1)
    assert await counts(pool, marker) == (6, 6)
    # the relay gets the rows that stood, not the failed savepoint's
    stored = await pool.fetch("SELECT seq FROM outbox WHERE convert_from(body, 'UTF8') LIKE '%' || $1 || '%'", marker)
    assert sorted(q.seq for rows in handoffs for q in rows) == sorted(r["seq"] for r in stored)


async def test_refusals_are_answered_at_once_and_write_nothing(pool, batcher) -> None:
    b, handoffs = batcher
    before = len(handoffs)
    r = await b.blow(command(location={"building": "99"}, description="batch-refused"))
    assert r.refusal.status == 422 and r.refusal.field == "location.building"
    r = await b.blow(Command(actor=Actor(role="responder", id="d-housing"), payload=BODY))
    assert r.refusal.status == 403
    assert len(handoffs) == before and await counts(pool, "batch-refused") == (0, 0)
