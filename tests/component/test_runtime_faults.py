"""Faults in the runtime, on a real nats-server and a real Postgres (both embedded, this module's own).

A transient fault (the database away) is retried in place and uses up no delivery; a message that
fails on its own is retried in place, the later messages of its whistle waiting behind it across
batches, and is dead-lettered with its error after `max_deliver` attempts; the relay outlives a
database restart and sets aside what JetStream will never take; a command sent again with its
Idempotency-Key gets its first reply.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from uuid import UUID, uuid4

import asyncpg
import nats
from pydantic import BaseModel

from services.cli import embedded
from shared import subjects
from shared.contracts import Actor, Command, Reply, WhistleClosed
from shared.db import OutboxMessage
from shared.ids import utcnow
from shared.runtime import Consumer, Request, ServiceRuntime
from shared.settings import ServiceSettings
from shared.streams import ensure_streams
from tests.component.conftest import until
from tests.signing import VERIFY_KEYS, wire


def pg_ctl(infra: dict, *args: str) -> None:
    embedded.pg_ctl(infra["pg"].data_dir, *args, "-w").check_returncode()


def settings(infra: dict, **overrides) -> ServiceSettings:
    return ServiceSettings.model_validate({
        "nats_url": infra["nats_url"], "database_url": infra["database_url"], "batch_size": 64,
        "command_verify_keys": VERIFY_KEYS, **overrides,
    })


def handled_table(tmp_path: Path) -> Path:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "001_handled.sql").write_text(
        "CREATE TABLE IF NOT EXISTS handled (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());")
    return migrations


def parse(m) -> SimpleNamespace:
    return SimpleNamespace(**json.loads(m.data))


async def publish(js, subject: str, ns, whistle=lambda n: f"w{n}") -> dict[int, UUID]:
    ids = {}
    for n in ns:
        ids[n] = uuid4()
        body = {"id": str(ids[n]), "n": n, "whistle_id": whistle(n)}
        await js.publish(subject, json.dumps(body).encode(), headers={"Nats-Msg-Id": str(ids[n])})
    return ids


async def test_a_database_outage_is_waited_out_in_place_fetching_nothing_and_using_up_no_delivery(
    infra: dict, tmp_path: Path,
) -> None:
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)

    async def handle(conn, item, now):  # noqa: ARG001
        await conn.execute("INSERT INTO handled (n) VALUES ($1)", item.n)
        return []

    # ack_wait shorter than the outage: without the messages kept in hand they would come back
    runtime = ServiceRuntime("rtfaults", settings(infra, max_deliver=2, ack_wait_s=3.0), handled_table(tmp_path))
    runtime.consume(Consumer("whistle.rtoutage", handle, durable="rtoutage", parse=parse, dedup=lambda i: UUID(i.id)))
    await runtime.start()
    try:
        await publish(js, "whistle.rtoutage", range(0, 10))
        assert await until(lambda: _count(runtime.pool, 10))
        pg_ctl(infra, "stop", "-m", "fast")
        await publish(js, "whistle.rtoutage", range(10, 210))
        await asyncio.sleep(8)  # longer than ack_wait, twice the deliveries the consumer allows
        assert runtime.ready is False and "postgres" in runtime.health()["problems"]
        info = await js.consumer_info("EVENTS", "rtoutage")
        assert info.num_pending >= 200 - 64, "fetching stopped with a batch in hand"
        pg_ctl(infra, "start")
        assert await until(lambda: _count(runtime.pool, 210), timeout=60) == 210
        info = await js.consumer_info("EVENTS", "rtoutage")
        assert (info.num_redelivered, info.num_ack_pending, info.num_pending) == (0, 0, 0)
        assert await until(lambda: _true(runtime.ready), timeout=10), runtime.health()
    finally:
        await runtime.stop()
        await nc.close()


async def test_a_failing_message_holds_its_whistle_across_batches_then_is_dead_lettered_with_its_error(
    infra: dict, tmp_path: Path,
) -> None:
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    order: list[int] = []
    attempts: dict[int, int] = {}

    async def handle(conn, item, now):  # noqa: ARG001
        attempts[item.n] = attempts.get(item.n, 0) + 1
        if item.n == 1 and attempts[1] < 3:
            raise ValueError("1 is not ready yet")  # fails twice, then passes
        if item.n == 100:
            raise ValueError("100 can never be handled")
        await conn.execute("INSERT INTO handled (n) VALUES ($1)", item.n)
        order.append(item.n)
        return []

    runtime = ServiceRuntime("rtorder", settings(infra, max_deliver=3), handled_table(tmp_path))
    runtime.consume(Consumer("whistle.rtorder", handle, durable="rtorder", parse=parse, dedup=lambda i: UUID(i.id)))
    await runtime.start()
    try:
        # 1, 3 and 5 are one whistle; 2 and 4 others; each in its own batch
        for n in range(1, 6):
            await publish(js, "whistle.rtorder", [n], whistle=lambda n: "wodd" if n % 2 else f"w{n}")
            await asyncio.sleep(0.3)
        assert await until(lambda: _count(runtime.pool, 5))
        assert order.index(2) < order.index(1) and order.index(4) < order.index(1), "others did not wait"
        assert [n for n in order if n % 2] == [1, 3, 5], "the whistle's events kept their order"
        assert attempts[3] == attempts[5] == 1, "3 and 5 were never tried before 1 passed"

        deadletters = await js.subscribe(f"{subjects.DEADLETTER}.rtorder", ordered_consumer=True)
        await publish(js, "whistle.rtorder", [100, 101], whistle=lambda n: "wbad")
        await publish(js, "whistle.rtorder", [102], whistle=lambda n: "wgood")
        letter = await deadletters.next_msg(timeout=30)
        assert json.loads(letter.data)["n"] == 100
        assert letter.headers["Whistle-Consumer"] == "rtorder" and letter.headers["Whistle-Stream"] == "EVENTS"
        assert "failed 3 times" in letter.headers["Whistle-Reason"] and letter.headers["Whistle-Deliveries"] == "3"
        assert "100 can never be handled" in letter.headers["Whistle-Reason"]
        assert await until(lambda: _count(runtime.pool, 7))  # 101 went on after 100 was set aside
        assert attempts[100] == 3 and attempts[101] == 1 and order[-1] == 101
        info = await js.consumer_info("EVENTS", "rtorder")
        assert (info.num_redelivered, info.num_ack_pending) == (0, 0), "retried in place, never redelivered"
    finally:
        await runtime.stop()
        await nc.close()


async def test_the_relay_outlives_a_database_restart_and_sets_aside_what_jetstream_never_takes(
    infra: dict, tmp_path: Path,
) -> None:
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    heard: list[str] = []

    async def hear(m) -> None:
        heard.append(json.loads(m.data)["whistle_id"])

    await nc.subscribe(f"{WhistleClosed.SUBJECT}.>", cb=hear)  # published with the whistle id
    deadletters = await js.subscribe(f"{subjects.DEADLETTER}.rtrelay", ordered_consumer=True)

    def closed() -> WhistleClosed:
        return WhistleClosed(occurred_at=utcnow(), whistle_id=uuid4(), actor="system:test")

    class Emit(BaseModel):
        events: int = 1
        raw: list[tuple[str, int]] = []

    async def command(conn, cmd: Command[Emit], now):  # noqa: ARG001
        effects = [closed() for _ in range(cmd.payload.events)]
        effects += [OutboxMessage(s, b"x" * size, f"bad-{uuid4()}") for s, size in cmd.payload.raw]
        return Reply.success({"whistles": [str(e.whistle_id) for e in effects if isinstance(e, WhistleClosed)]}), effects

    runtime = ServiceRuntime("rtrelay", settings(infra), handled_table(tmp_path))
    runtime.serve(Request("cmd.t.relay", command, Emit))
    await runtime.start()
    client = await nats.connect(infra["nats_url"])

    async def ask(**payload) -> Reply:
        body = wire("cmd.t.relay", Command(actor=Actor(role="system", id="test"), payload=payload))
        for _ in range(100):  # while the service is still reconnecting it answers 503
            reply = Reply.model_validate_json((await client.request("cmd.t.relay", body, timeout=10)).data)
            if reply.ok:
                return reply
            await asyncio.sleep(0.2)
        raise AssertionError(reply)

    try:
        first = (await ask()).data["whistles"]
        assert await until(lambda: _true(set(first) <= set(heard)))
        pg_ctl(infra, "restart", "-m", "fast")
        after = (await ask(events=3)).data["whistles"]
        assert await until(lambda: _true(set(after) <= set(heard)), timeout=30), "the relay did not come back"
        assert heard.index(after[0]) < heard.index(after[1]) < heard.index(after[2])

        # no stream takes this subject, and this one is over max_payload: set aside, the rest go on
        rest = (await ask(events=2, raw=[("nowhere.at.all", 2), (WhistleClosed.SUBJECT, nc.max_payload + 10)])).data
        assert await until(lambda: _true(set(rest["whistles"]) <= set(heard)), timeout=30)
        reasons = sorted([(await deadletters.next_msg(timeout=10)).headers["Whistle-Reason"] for _ in range(2)])
        assert "max_payload" in reasons[0] and "503" in reasons[1]
        async def set_aside() -> list[str] | None:  # the dead letters go out first, then the rows are kept
            rows = await runtime.pool.fetch("SELECT subject FROM outbox_dead ORDER BY seq")
            return [r["subject"] for r in rows] if len(rows) == 2 else None

        assert await until(set_aside, timeout=10) == ["nowhere.at.all", WhistleClosed.SUBJECT]
        assert await until(lambda: _outbox_empty(runtime.pool))
        assert await until(lambda: _true(runtime.ready), timeout=10), runtime.health()
    finally:
        await client.close()
        await runtime.stop()
        await nc.close()


async def test_a_command_sent_again_with_its_key_gets_its_first_reply_and_a_late_one_is_not_carried_out(
    infra: dict, tmp_path: Path,
) -> None:
    async def count(conn, cmd: Command, now):  # noqa: ARG001
        await conn.execute("SELECT pg_advisory_xact_lock(42)")  # as a real command locks what it changes
        n = await conn.fetchval("SELECT count(*) FROM handled") + 1
        await conn.execute("INSERT INTO handled (n) VALUES ($1)", n)
        await asyncio.sleep(0.2)  # twins overlap
        return Reply.success({"n": n}), []

    runtime = ServiceRuntime("rtidem", settings(infra), handled_table(tmp_path))
    runtime.serve(Request("cmd.t.idem", count))
    await runtime.start()
    client = await nats.connect(infra["nats_url"])

    async def ask(key: str | None, subject: str = "cmd.t.idem", **extra) -> dict:
        cmd = Command(actor=Actor(role="responder", id="m-1"), idempotency_key=key, **extra)
        return json.loads((await client.request(subject, wire(subject, cmd), timeout=10)).data)

    try:
        first, twin = await asyncio.gather(ask("k1"), ask("k1"))
        assert first == twin and first["ok"], (first, twin)
        assert await ask("k1") == first
        assert (await ask("k2"))["data"]["n"] == first["data"]["n"] + 1
        assert (await ask(None))["ok"]
        assert await runtime.pool.fetchval("SELECT count(*) FROM handled") == 3
        # the key belongs to the caller: another responder with the same key is another command
        other = wire("cmd.t.idem", Command(actor=Actor(role="responder", id="m-2"), idempotency_key="k1"))
        assert json.loads((await client.request("cmd.t.idem", other, timeout=10)).data)["data"]["n"] == 4
        late = await ask("k3", expires_at=utcnow())
        assert late["refusal"]["code"] == "expired"
        assert await runtime.pool.fetchval("SELECT count(*) FROM handled") == 4
    finally:
        await client.close()
        await runtime.stop()


async def _count(pool: asyncpg.Pool, n: int) -> int | None:
    try:
        got = await pool.fetchval("SELECT count(*) FROM handled")
    except Exception:
        return None
    return got if got >= n else None


async def _outbox_empty(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def _true(value: bool) -> bool:
    return value


async def test_a_durable_made_by_an_earlier_version_gets_the_delivery_limit_and_ack_wait_of_this_one(
    infra: dict, tmp_path: Path,
) -> None:
    from shared.streams import consumer_config

    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    await js.add_consumer("EVENTS", consumer_config("rtold", max_deliver=5, ack_wait_s=30.0,
                                                    filters=("whistle.rtold",)))

    async def handle(conn, item, now):  # noqa: ARG001
        return []

    runtime = ServiceRuntime("rtold", settings(infra, crash_deliver=40, ack_wait_s=9.0), handled_table(tmp_path))
    runtime.consume(Consumer("whistle.rtold", handle, durable="rtold", parse=parse))
    await runtime.start()
    try:
        config = (await js.consumer_info("EVENTS", "rtold")).config
        assert (config.max_deliver, config.ack_wait) == (40, 9.0)
    finally:
        await runtime.stop()
        await nc.close()
