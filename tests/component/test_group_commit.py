"""Group commit (`Request(..., together=Together())`) on a real nats-server and a real Postgres (both
embedded): concurrent requests share one transaction and are answered once it commits; each is admitted
alone (a refusal changes nothing); a request the database refuses fails alone; a database restart
answers 503 and nothing is half written; the events of what committed are published."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from uuid import uuid4

import nats
from pydantic import BaseModel, Field

from shared.contracts import Actor, Command, Reply, Role, WhistleClosed
from shared.ids import utcnow
from shared.runtime import Request, ServiceRuntime, Together
from shared.streams import ensure_streams
from tests.component.conftest import until
from tests.component.test_runtime_faults import handled_table, pg_ctl, settings
from tests.signing import wire

SUBJECT = "cmd.t.together"
STAFF: frozenset[Role] = frozenset({"dispatcher"})


class Add(BaseModel):
    n: int = Field(ge=0)


async def add(conn, commands: list[Command[Add]], now):  # noqa: ARG001
    """Each command's n into `handled` (n is its primary key), with a whistle.closed to publish."""
    tx = await conn.fetchval("SELECT txid_current()")
    await conn.executemany("INSERT INTO handled (n) VALUES ($1)", [(c.payload.n,) for c in commands])
    out = []
    for c in commands:
        closed = WhistleClosed(occurred_at=utcnow(), whistle_id=uuid4(), actor=str(c.actor))
        out.append((Reply.success({"n": c.payload.n, "tx": tx, "whistle": str(closed.whistle_id)}), [closed]))
    return out


async def test_concurrent_requests_share_a_transaction_and_a_refused_one_changes_nothing(
    infra: dict, tmp_path: Path,
) -> None:
    nc = await nats.connect(infra["nats_url"])
    await ensure_streams(nc.jetstream())
    heard: set[str] = set()

    async def hear(m) -> None:
        heard.add(json.loads(m.data)["whistle_id"])

    await nc.subscribe(f"{WhistleClosed.SUBJECT}.>", cb=hear)
    runtime = ServiceRuntime("t", settings(infra), handled_table(tmp_path))
    runtime.serve(Request(SUBJECT, add, Add, STAFF, together=Together(linger_s=0.05)))
    await runtime.start()

    async def ask(payload: dict, role: str = "dispatcher", **extra) -> Reply:
        body = wire(SUBJECT, Command(actor=Actor(role=role, id="d1"), payload=payload, **extra))
        return Reply.model_validate_json((await nc.request(SUBJECT, body, timeout=10)).data)

    async def handled() -> set[int]:
        return {r["n"] for r in await runtime.pool.fetch("SELECT n FROM handled")}

    try:
        replies = await asyncio.gather(*(ask({"n": n}) for n in range(20)))
        assert all(r.ok for r in replies), replies
        assert len({r.data["tx"] for r in replies}) == 1, "twenty requests of a moment, one transaction"
        assert [r.data["n"] for r in replies] == list(range(20))  # each its own answer
        assert await until(lambda: _true({r.data["whistle"] for r in replies} <= heard))

        # refused alone, before the batch: nothing written for them, the others go through
        refused = await asyncio.gather(ask({"n": -1}), ask({"n": 100}, role="responder"), ask({"m": 1}),
                                       ask({"n": 101}, expires_at=utcnow()), ask({"n": 102}))
        assert [r.refusal.status if r.refusal else 200 for r in refused] == [422, 403, 422, 504, 200]
        assert refused[0].refusal.field == "n" and refused[2].refusal.field == "n"  # below 0; missing
        unsigned = json.dumps(Command(actor=Actor(role="dispatcher", id="d1"), payload={"n": 103})
                              .model_dump(mode="json")).encode()
        assert Reply.model_validate_json((await nc.request(SUBJECT, unsigned, timeout=10)).data).refusal.status == 401
        assert await handled() == set(range(20)) | {102}

        # the database refuses one (n already there): the batch goes again one by one, only it fails
        clash = await asyncio.gather(*(ask({"n": n}) for n in (200, 201, 5, 202)))
        assert [r.ok for r in clash] == [True, True, False, True]
        assert clash[2].refusal.status == 503 and clash[2].refusal.code == "unavailable"
        assert await handled() == set(range(20)) | {102, 200, 201, 202}
        assert await until(lambda: _true({r.data["whistle"] for r in clash if r.ok} <= heard))

        # the database restarting: 503 meanwhile (nothing written), then it goes through again
        pg_ctl(infra, "restart", "-m", "fast")
        for _ in range(100):
            again = await ask({"n": 300})
            if again.ok:
                break
            assert again.refusal.status == 503
            await asyncio.sleep(0.2)
        assert again.ok and 300 in await handled()
    finally:
        await runtime.stop()
        await nc.close()


async def _true(value: bool) -> bool:
    return value
