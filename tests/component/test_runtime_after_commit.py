"""The runtime's post-commit hook for event consumers: called with what each transaction handled,
once it has committed (what it wrote is visible from another connection), never with duplicates."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from uuid import UUID, uuid4

import nats

from shared.runtime import Consumer, ServiceRuntime
from shared.streams import ensure_streams
from tests.component.conftest import until
from tests.component.test_runtime_batches import settings

SUBJECT = "whistle.aftercommit"  # its own subject: other tests share the stream


async def test_after_commit_sees_the_batch_committed_and_gets_each_new_item_once(infra: dict, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "001_seen.sql").write_text("CREATE TABLE IF NOT EXISTS seen (n int PRIMARY KEY);")
    ids = [uuid4() for _ in range(6)]
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    for n, event_id in enumerate(ids):
        await js.publish(SUBJECT, json.dumps({"id": str(event_id), "n": n, "whistle_id": f"w{n}"}).encode(),
                         headers={"Nats-Msg-Id": f"ac{event_id}"})
    await js.publish(SUBJECT, json.dumps({"id": str(ids[2]), "n": 2, "whistle_id": "w2"}).encode(),
                     headers={"Nats-Msg-Id": f"again{ids[2]}"})  # a duplicate: the inbox drops it

    async def handle(conn, items, now):
        await conn.executemany("INSERT INTO seen (n) VALUES ($1)", [(i.n,) for i in items])
        return []

    announced: list[int] = []
    visible: list[bool] = []
    runtime = ServiceRuntime("rtaftercommit", settings(infra), migrations)

    async def after_commit(items) -> None:
        rows = {r["n"] for r in await runtime.pool.fetch("SELECT n FROM seen")}  # another connection
        visible.append(all(i.n in rows for i in items))
        announced.extend(i.n for i in items)

    runtime.consume(Consumer(SUBJECT, handle, batch=True, durable="rtaftercommit",
                             parse=lambda m: SimpleNamespace(**json.loads(m.data)), dedup=lambda item: UUID(item.id),
                             after_commit=after_commit))
    await runtime.start()
    try:
        assert await until(lambda: _count(announced, 6))
    finally:
        await runtime.stop()
        await nc.close()
    assert sorted(announced) == list(range(6))
    assert visible and all(visible)


async def _count(items: list, n: int) -> bool:
    return len(items) >= n
