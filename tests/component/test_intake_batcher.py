"""Intake's blows, group-committed, on a real (embedded) Postgres: concurrent blows share transactions,
keys hold within and across batches, and refusals write nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from services.cli.embedded import EmbeddedPostgres
from services.intake.app import build
from services.intake.settings import IntakeSettings
from shared import subjects
from shared.contracts import Actor, Command, Reply
from shared.db import Queued, create_pool, migrate
from shared.runtime.requests import typed
from shared.runtime.together import GroupCommit

DISPATCHER = Actor(role="dispatcher", id="d1")
BODY = {"category": "noise", "description": "西门夜里施工 / building works at night", "location": {"building": "3"}}


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("intake-batcher"))
    try:
        yield pg.uri
    finally:
        pg.stop()


class HandedRows:
    """Stands in for the leading outbox relay: records each commit's hand-off."""

    leading = True

    def __init__(self) -> None:
        self.handoffs: list[list[Queued]] = []

    def handoff(self, rows: list[Queued]) -> None:
        self.handoffs.append(rows)


@pytest.fixture
async def blows(database_url: str) -> AsyncIterator[tuple[GroupCommit, list[list[Queued]], asyncpg.Pool]]:
    """Intake's group commit of blows as it builds it (nothing but its writer started)."""
    runtime = build(IntakeSettings(database_url=database_url, blow_linger_ms=5))
    runtime.pool = await create_pool(database_url, "intake")
    await migrate(runtime.pool, runtime.migrations)
    runtime.relay = HandedRows()  # type: ignore[assignment]
    together = next(g for g in runtime.together if g.request.subject == subjects.CMD_INTAKE_BLOW)
    together.begin()
    yield together, runtime.relay.handoffs, runtime.pool  # type: ignore[attr-defined]
    await together.stop()
    await runtime.pool.close()


def command(key: str | None = None, actor: Actor = DISPATCHER, **changes) -> Command | Reply:
    """A blow as the runtime admits it (payload typed, role checked), or its refusal."""
    return typed(BLOW, Command(actor=actor, payload={**BODY, **changes, "idempotency_key": key}).model_dump())


BLOW = next(g.request for g in build().together if g.request.subject == subjects.CMD_INTAKE_BLOW)


async def blow(together: GroupCommit, cmd: Command | Reply) -> Reply:
    return cmd if isinstance(cmd, Reply) else await together.submit(cmd)


async def counts(pool: asyncpg.Pool, marker: str) -> tuple[int, int]:
    """Whistles with the marker in their description, and outbox rows for them."""
    whistles = await pool.fetchval("SELECT count(*) FROM whistles WHERE description LIKE '%' || $1 || '%'", marker)
    outbox = await pool.fetchval("SELECT count(*) FROM outbox WHERE convert_from(body, 'UTF8') LIKE '%' || $1 || '%'",
                                 marker)
    return whistles, outbox


async def test_concurrent_blows_are_written_together_and_keys_give_one_whistle(blows) -> None:
    b, handoffs, pool = blows
    marker = "batch-keys"
    plan = [command(description=f"{marker} plain {i}") for i in range(30)]
    plan += [command("k-same", description=f"{marker} keyed")] * 4
    plan += [command("k-other", description=f"{marker} first body"), command("k-other", description=f"{marker} another")]
    replies = await asyncio.gather(*(blow(b, c) for c in plan))
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

    again = await blow(b, command("k-same", description=f"{marker} keyed"))  # a later batch replays it too
    assert again.data == {"id": same[0].data["id"], "status": "open", "replayed": True}
    assert (await blow(b, command("k-same", description="changed"))).refusal.code == "idempotency_conflict"
    assert await counts(pool, marker) == (32, 32)


async def test_refusals_are_answered_at_once_and_write_nothing(blows) -> None:
    b, handoffs, pool = blows
    before = len(handoffs)
    r = await blow(b, command(location={"building": "99"}, description="batch-refused"))
    assert r.refusal.status == 422 and r.refusal.field == "location.building"
    r = await blow(b, command(actor=Actor(role="responder", id="d-housing"), description="batch-refused"))
    assert r.refusal.status == 403
    assert len(handoffs) == before and await counts(pool, "batch-refused") == (0, 0)
