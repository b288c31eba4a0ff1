"""The runtime's batch handlers on a real nats-server and a real Postgres (both embedded).

A batch handler gets a fetched batch's new messages at once; a message that makes it fail must
not sink the others (they are handled one by one instead, the bad one is retried), and a
redelivered event id is dropped by the inbox before the handler sees it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import nats
import pytest

from services.cli.embedded import EmbeddedPostgres, start_nats
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from shared.streams import ensure_streams
from tests.e2e.conftest import free_port

SUBJECT = "whistle.blown"


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("runtime-batches")
    port = free_port()
    proc: subprocess.Popen = start_nats(home, port, home / "nats.log")
    pg = EmbeddedPostgres(home)
    try:
        yield {"nats_url": f"nats://127.0.0.1:{port}", "database_url": pg.uri, "home": home}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        pg.stop()


def settings(infra: dict) -> ServiceSettings:
    return ServiceSettings.model_validate({
        "nats_url": infra["nats_url"], "database_url": infra["database_url"],
        "max_deliver": 2, "nack_delay_s": 0.1, "batch_size": 64,
    })


async def until(predicate, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_a_failing_message_does_not_sink_its_batch_and_duplicates_never_reach_the_handler(
    infra: dict, tmp_path: Path,
) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "001_handled.sql").write_text("CREATE TABLE IF NOT EXISTS handled (n int PRIMARY KEY);")
    ids = [uuid4() for _ in range(10)]
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    # published before the consumer exists, so the first fetch takes them all in one batch;
    # the last one repeats event 3 under another message id (a redelivery the stream let through)
    for n, event_id in enumerate(ids):
        await js.publish(SUBJECT, json.dumps({"id": str(event_id), "n": n}).encode(), headers={"Nats-Msg-Id": f"m{n}"})
    await js.publish(SUBJECT, json.dumps({"id": str(ids[3]), "n": 3}).encode(), headers={"Nats-Msg-Id": "again"})

    calls: list[list[int]] = []

    async def handle(conn, items, now):  # noqa: ARG001
        calls.append([i["n"] for i in items])
        if any(i["n"] == 5 for i in items):
            raise ValueError("message 5 cannot be handled")
        await conn.executemany("INSERT INTO handled (n) VALUES ($1)", [(i["n"],) for i in items])
        return []

    runtime = ServiceRuntime("rtbatch", settings(infra), migrations)
    runtime.on_events(SUBJECT, handle, batch=True, durable="rtbatch", parse=lambda m: json.loads(m.data),
                      dedup=lambda item: UUID(item["id"]))
    await runtime.start()
    try:
        async def handled() -> set[int]:
            return {r["n"] for r in await runtime.pool.fetch("SELECT n FROM handled")}

        expected = set(range(10)) - {5}
        assert await until(lambda: _equal(handled(), expected)) == expected
        # message 5 is delivered max_deliver (2) times, then left for the max-deliveries advisory
        assert await until(lambda: _count(calls, [5], 2))
        await asyncio.sleep(0.5)  # nothing more arrives after the last delivery
    finally:
        await runtime.stop()
        await nc.close()

    assert calls[0] == list(range(10)), "the whole batch first, the repeated event 3 already dropped"
    # then one by one (in order), the good ones committed, the bad one rolled back
    assert calls[1:11] == [[n] for n in range(10)]
    # the redelivery of 5 (alone); nothing else is ever handled twice
    assert calls[11:] == [[5]]
    assert await _inbox_has(infra, ids[5]) is False
    assert await _inbox_has(infra, ids[4]) is True


async def _equal(value, expected):
    return expected if await value == expected else None


async def _count(calls: list[list[int]], call: list[int], n: int) -> bool:
    return sum(1 for c in calls if c == call) >= n


async def _inbox_has(infra: dict, event_id: UUID) -> bool:
    import asyncpg

    conn = await asyncpg.connect(infra["database_url"])
    try:
        return bool(await conn.fetchval("SELECT true FROM rtbatch.inbox WHERE event_id = $1", event_id))
    finally:
        await conn.close()
