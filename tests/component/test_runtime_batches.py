"""The runtime's batch handlers on a real nats-server and a real Postgres (both embedded).

A batch handler gets a fetched batch's new messages at once; a message that makes it fail must
not sink the others (they are handled one by one instead, the bad one is retried), and a
redelivered event id is dropped by the inbox before the handler sees it.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace
from uuid import UUID, uuid4

import nats

from shared.runtime import Consumer, ServiceRuntime, Timed
from shared.settings import ServiceSettings
from shared.streams import ensure_streams
from tests.component.conftest import until

SUBJECT = "whistle.blown"


def settings(infra: dict) -> ServiceSettings:
    return ServiceSettings.model_validate({
        "nats_url": infra["nats_url"], "database_url": infra["database_url"],
        "max_deliver": 2, "nack_delay_s": 0.1, "batch_size": 64,
    })


async def test_a_failing_message_does_not_sink_its_batch_nor_pass_its_whistle_and_duplicates_never_arrive(
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
    # message 7 is about the same whistle as 5, which cannot be handled
    whistle = {n: "w5" if n in (5, 7) else f"w{n}" for n in range(10)}
    for n, event_id in enumerate(ids):
        body = {"id": str(event_id), "n": n, "whistle_id": whistle[n]}
        await js.publish(SUBJECT, json.dumps(body).encode(), headers={"Nats-Msg-Id": f"m{n}"})
    again = {"id": str(ids[3]), "n": 3, "whistle_id": "w3"}
    await js.publish(SUBJECT, json.dumps(again).encode(), headers={"Nats-Msg-Id": "again"})

    calls: list[list[int]] = []

    async def handle(conn, items, now):  # noqa: ARG001
        calls.append([i.n for i in items])
        if any(i.n == 5 for i in items):
            raise ValueError("message 5 cannot be handled")
        await conn.executemany("INSERT INTO handled (n) VALUES ($1)", [(i.n,) for i in items])
        return []

    runtime = ServiceRuntime("rtbatch", settings(infra), migrations)
    runtime.consume(Consumer(SUBJECT, handle, batch=True, durable="rtbatch", parse=lambda m: SimpleNamespace(**json.loads(m.data)),
                             dedup=lambda item: UUID(item.id)))
    await runtime.start()
    try:
        async def handled() -> set[int]:
            return {r["n"] for r in await runtime.pool.fetch("SELECT n FROM handled")}

        expected = set(range(10)) - {5, 7}
        assert await until(lambda: _equal(handled(), expected)) == expected
        # message 5 is delivered max_deliver (2) times, then left for the max-deliveries advisory;
        # 7 waits behind it each time, so it is never handled before (or without) 5
        assert await until(lambda: _delivered(calls, 5, 2))
        await asyncio.sleep(0.5)  # nothing more arrives after the last delivery
    finally:
        await runtime.stop()
        await nc.close()

    assert calls[0] == list(range(10)), "the whole batch first, the repeated event 3 already dropped"
    # then one by one (in order), the good ones committed, the bad one rolled back, 7 held back
    assert calls[1:10] == [[0], [1], [2], [3], [4], [5], [6], [8], [9]]
    # redeliveries bring only 5 and 7; 7 never reaches the handler without 5 before it
    assert all(set(c) <= {5, 7} and c[0] == 5 for c in calls[10:])
    assert await _inbox_has(infra, ids[5]) is False and await _inbox_has(infra, ids[7]) is False
    assert await _inbox_has(infra, ids[4]) is True


async def _equal(value, expected):
    return expected if await value == expected else None


async def _delivered(calls: list[list[int]], n: int, times: int) -> bool:
    """n was handed to the handler alone `times` times (its one-by-one attempts)."""
    return sum(1 for c in calls if c == [n]) >= times


async def _inbox_has(infra: dict, event_id: UUID) -> bool:
    import asyncpg

    conn = await asyncpg.connect(infra["database_url"])
    try:
        return bool(await conn.fetchval("SELECT true FROM rtbatch.inbox WHERE event_id = $1", event_id))
    finally:
        await conn.close()


async def test_pull_batches_bring_every_message_once_in_order_then_end_empty_on_expiry(infra: dict) -> None:
    from shared.pull import PullBatches
    from shared.streams import consumer_config

    nc = await nats.connect(infra["nats_url"])
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        await js.add_consumer("EVENTS", consumer_config("pulltest", max_deliver=2, ack_wait_s=30,
                                                        filters=("whistle.pulltest",)))
        for n in range(1000):
            await js.publish("whistle.pulltest", str(n).encode(), headers={"Nats-Msg-Id": f"pull-{n}"})
        pull = PullBatches(nc, "EVENTS", "pulltest", batch=64, expires_s=0.5)
        await pull.start()
        seen: list[int] = []
        sizes: list[int] = []
        while len(seen) < 1000:
            batch = await pull.next_batch()
            assert batch, "messages were waiting: a batch is never empty then"
            sizes.append(len(batch))
            for m in batch:
                seen.append(int(m.data))
                await m.ack()
        assert seen == list(range(1000)) and max(sizes) <= 64
        assert await pull.next_batch() == [] and pull.last_status == "408"  # nothing more: the request expired
        await js.publish("whistle.pulltest", b"1000", headers={"Nats-Msg-Id": "pull-1000"})
        assert [int(m.data) for m in await pull.next_batch()] == [1000]  # a new request picks up the newcomer
        await js.delete_consumer("EVENTS", "pulltest")
        started = asyncio.get_running_loop().time()
        for _ in range(3):  # refused requests: empty batches, spaced out rather than a tight loop
            assert await pull.next_batch() == []
        assert pull.last_status not in (None, "408")
        assert asyncio.get_running_loop().time() - started >= 1.0
        await pull.stop()
    finally:
        await nc.close()


async def test_messages_that_come_early_are_held_until_their_time_in_time_order_and_far_ones_go_back(
    infra: dict, tmp_path: Path,
) -> None:
    """The clock firings' path: JetStream fires a schedule ahead of its time; the runtime holds it."""
    from datetime import timedelta

    from shared.ids import utcnow

    subject = "whistle.heldtest"
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    t0 = utcnow()
    release = {"now": None, "past": t0 - timedelta(seconds=5), "soon": t0 + timedelta(seconds=1.2),
               "sooner": t0 + timedelta(seconds=0.6), "later": t0 + timedelta(seconds=2.2),
               "far": t0 + timedelta(seconds=3.0)}  # beyond hold_max_s: goes back to the server
    for name, at in release.items():
        body = {"name": name, "at": at.isoformat() if at else None}
        await js.publish(subject, json.dumps(body).encode(), headers={"Nats-Msg-Id": f"held-{name}"})

    handled: dict[str, tuple] = {}  # name -> (handled at, delivery number)

    async def handle(conn, items, now):  # noqa: ARG001
        for i in items:
            handled[i.name] = (utcnow(), i.delivered)
        return []

    def parse(m):
        body = json.loads(m.data)
        from datetime import datetime

        return SimpleNamespace(name=body["name"], at=body["at"] and datetime.fromisoformat(body["at"]),
                               delivered=m.metadata.num_delivered)

    config = settings(infra).model_copy(update={"hold_max_s": 2.5, "max_deliver": 3})
    runtime = ServiceRuntime("rtheld", config, tmp_path)
    runtime.consume(Consumer(subject, handle, batch=True, durable="rtheld", parse=parse, dedup=lambda _: None,
                             timed=Timed(lambda item: item.at)))
    await runtime.start()
    try:
        async def all_handled() -> bool:
            return len(handled) == len(release)

        assert await until(all_handled, timeout=15)
    finally:
        await runtime.stop()
        await nc.close()

    for name, at in release.items():
        assert at is None or handled[name][0] >= at, f"{name} was handled before its time"
    order = sorted(handled, key=lambda n: handled[n][0])
    assert order == ["now", "past", "sooner", "soon", "later", "far"]
    # each one is released at its own time, not held until the batch's last one
    assert handled["sooner"][0] < release["soon"] and handled["soon"][0] < release["later"]
    assert handled["later"][1] == 1 and handled["far"][1] == 2  # the far one went back once, then was held


async def test_batches_that_overlap_run_together_and_any_other_waits_for_every_batch_before_it(
    infra: dict, tmp_path: Path,
) -> None:
    """Escalation's summons consumer: batches of new summons overlap (two at a time); a batch with a
    later event of a summons starts only once every batch before it is done, so it finds its clocks."""
    subject = "whistle.overlaptest"
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    # published before the consumer exists: batches of 8 in stream order; batch 2 holds one "move"
    kinds = ["new"] * 16 + ["move"] + ["new"] * 15 + ["new"] * 8
    for n, kind in enumerate(kinds):
        body = {"n": n, "kind": kind}
        await js.publish(subject, json.dumps(body).encode(), headers={"Nats-Msg-Id": f"overlap-{n}"})

    spans: list[tuple[list[int], float, float]] = []  # (messages, started, ended) per handled batch
    loop = asyncio.get_running_loop()

    async def handle(conn, items, now):  # noqa: ARG001
        started = loop.time()
        await asyncio.sleep(0.6 if items[0].n == 0 else 0.3)  # the first batch ends after the second
        spans.append(([i.n for i in items], started, loop.time()))
        return []

    config = settings(infra).model_copy(update={"batch_size": 8})
    runtime = ServiceRuntime("rtoverlap", config, tmp_path)
    runtime.consume(Consumer(subject, handle, batch=True, durable="rtoverlap", concurrency=2,
                             parse=lambda m: SimpleNamespace(**json.loads(m.data)), dedup=lambda _: None,
                             overlaps=lambda item: item.kind == "new"))
    await runtime.start()
    try:
        async def all_handled() -> bool:
            return sum(len(ns) for ns, _, _ in spans) >= len(kinds)

        assert await until(all_handled, timeout=15)
        await asyncio.sleep(0.5)  # nothing more arrives
    finally:
        await runtime.stop()
        await nc.close()

    assert sorted(n for ns, _, _ in spans for n in ns) == list(range(len(kinds))), "each message once"
    batches = {ns[0] // 8: (s, e) for ns, s, e in spans}
    assert sorted(ns for ns, _, _ in spans) == [list(range(b * 8, b * 8 + 8)) for b in range(5)]
    # batches 0 and 1 (new summons only) ran together
    assert batches[1][0] < batches[0][1]
    # batch 2 (a move) started once 0 and 1 were done; batch 3 (new summons only) overlapped it
    assert batches[2][0] >= max(batches[0][1], batches[1][1])
    assert batches[3][0] < batches[2][1]
    # never more than two at once
    for b, (s, _) in batches.items():
        assert sum(1 for s2, e2 in batches.values() if s2 <= s < e2) <= 2, f"batch {b} started a third"


async def test_an_overlapping_consumer_outlives_a_batch_it_could_not_start(infra: dict, tmp_path: Path) -> None:
    """A fault while a batch is being started (dead-lettering with NATS gone, say) leaves its
    messages unacked for redelivery; the fetch loop goes on."""
    subject = "whistle.overlapfault"
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    for n in range(3):
        await js.publish(subject, json.dumps({"n": n}).encode(), headers={"Nats-Msg-Id": f"overlapfault-{n}"})
    faults = {"left": 1}
    handled: list[int] = []

    def overlaps(item) -> bool:
        if faults["left"]:
            faults["left"] -= 1
            raise ConnectionError("NATS gone while starting the batch")
        return True

    async def handle(conn, items, now):  # noqa: ARG001
        handled.extend(i.n for i in items)
        return []

    config = settings(infra).model_copy(update={"ack_wait_s": 1.0})
    runtime = ServiceRuntime("rtoverlapfault", config, tmp_path)
    runtime.consume(Consumer(subject, handle, batch=True, durable="rtoverlapfault", concurrency=2,
                             parse=lambda m: SimpleNamespace(**json.loads(m.data)), dedup=lambda _: None,
                             overlaps=overlaps))
    await runtime.start()
    try:
        async def all_handled() -> bool:
            return sorted(handled) == [0, 1, 2]

        assert await until(all_handled, timeout=15), handled
    finally:
        await runtime.stop()
        await nc.close()
    assert faults["left"] == 0


async def test_a_replica_whose_relay_does_not_lead_forwards_what_it_commits_to_the_leader_and_nothing_notifies(
    infra: dict, tmp_path: Path, monkeypatch,
) -> None:
    """Two replicas of one service: the first one's relay takes the lock; what the second commits is
    forwarded to it over core NATS and published from memory, well before its table poll (made 60 s here),
    then deleted; no commit NOTIFYs Postgres (a lock for the whole database per commit). A forward lost
    (no leader then) is read from the table once a relay leads."""
    import asyncpg

    from shared.contracts import WhistleClosed
    from shared.db import write_outbox
    from shared.ids import utcnow
    from shared.runtime import relay as relay_module

    monkeypatch.setattr(relay_module, "POLL_S", 60.0)
    first, second = (ServiceRuntime("rtrelay", settings(infra), tmp_path) for _ in range(2))
    await first.start()
    await second.start()
    listener = await asyncpg.connect(infra["database_url"])
    notified: list[str] = []
    await listener.add_listener("rtrelay_outbox", lambda *args: notified.append(args[-1]))
    nc = await nats.connect(infra["nats_url"])
    heard: list[bytes] = []

    async def hear(m) -> None:
        heard.append(m.data)

    await nc.subscribe(f"{WhistleClosed.SUBJECT}.>", cb=hear)
    try:
        assert await until(lambda: _true(first.relay.leading and not first.relay._table_first))
        assert second.relay.leading is False
        sent = []
        for runtime in (second, first, second):
            events = [WhistleClosed(occurred_at=utcnow(), whistle_id=uuid4(), actor="system:test") for _ in range(3)]
            async with runtime.pool.acquire() as conn, conn.transaction():
                queued = await write_outbox(conn, events)
            runtime.relay.handoff(queued)
            sent += [e.model_dump_json().encode() for e in events]
        assert await until(lambda: _true(len(heard) == 9), timeout=20)
        assert sorted(heard) == sorted(sent)  # each once
        assert await until(lambda: _rows_in(first.pool, "outbox", 0), timeout=20)
        await asyncio.sleep(0.3)
        assert notified == [] and len(heard) == 9

        lost = WhistleClosed(occurred_at=utcnow(), whistle_id=uuid4(), actor="system:test")
        async with second.pool.acquire() as conn, conn.transaction():
            await write_outbox(conn, [lost])  # its forward never arrives
        await asyncio.sleep(0.5)
        assert len(heard) == 9
        await first.stop()  # the second replica's relay leads next, and reads the table first
        assert await until(lambda: _true(len(heard) == 10), timeout=20)
        assert heard[-1] == lost.model_dump_json().encode() and notified == []
    finally:
        await nc.close()
        await listener.close()
        await second.stop()
        await first.stop()


async def _true(value) -> bool:
    return bool(value)


async def _rows_in(pool, table: str, n: int) -> bool:
    return await pool.fetchval(f"SELECT count(*) FROM {table}") == n


async def _relay_rig(infra: dict, schema: str):
    """A pool on a schema of its own, a NATS connection with the streams, and what it hears of whistle.closed
    (published with the whistle id)."""
    from shared.contracts import WhistleClosed
    from shared.db import SHARED_MIGRATIONS, create_pool, migrate

    pool = await create_pool(infra["database_url"], schema)
    await migrate(pool, [SHARED_MIGRATIONS])
    nc = await nats.connect(infra["nats_url"])
    await ensure_streams(nc.jetstream())
    heard: list[bytes] = []

    async def hear(m) -> None:
        heard.append(m.data)

    await nc.subscribe(f"{WhistleClosed.SUBJECT}.>", cb=hear)
    return pool, nc, heard


async def test_the_leading_relay_publishes_what_it_is_handed_from_memory_and_every_row_once(infra: dict) -> None:
    """Committed rows handed to the relay go out as handed (not read back), then leave the table; a
    row a table read published before its hand-off arrived is not published again."""
    from shared.contracts import WhistleClosed
    from shared.db import write_outbox
    from shared.ids import utcnow
    from shared.runtime.relay import OutboxRelay

    pool, nc, heard = await _relay_rig(infra, "rthandoff")
    relay = OutboxRelay(pool, nc, "rthandoff")
    relay.leading, relay._table_first = True, False  # as run() sets them once it holds the lock and has
    # drained the table; its loop is not running here

    def closed() -> WhistleClosed:
        return WhistleClosed(occurred_at=utcnow(), whistle_id=uuid4(), actor="system:test")

    try:
        events = [closed(), closed()]
        async with pool.acquire() as conn, conn.transaction():
            handed = await write_outbox(conn, events)
            await conn.execute("UPDATE outbox SET body = 'read back' WHERE seq = ANY($1::bigint[])",
                               [q.seq for q in handed])
        assert [q.body for q in handed] == [e.model_dump_json().encode() for e in events]
        relay.handoff(handed)
        assert await relay._publish_handed() == 2
        assert await until(lambda: _true(len(heard) == 2))
        assert heard == [q.body for q in handed]  # from memory: the table's bodies were never read
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 2  # deleted together, a moment later
        await relay._forget_published()
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 0

        async with pool.acquire() as conn, conn.transaction():
            late = await write_outbox(conn, [closed()])
        assert await relay._drain_once() == 1  # a table read got it before its hand-off
        relay.handoff(late)
        assert await relay._publish_handed() == 0 and relay._publisher.duplicates == 0
        assert await until(lambda: _true(len(heard) == 3))
        await asyncio.sleep(0.3)
        await relay._forget_published()
        assert heard[2:] == [late[0].body] and await pool.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await nc.close()
        await pool.close()


async def test_the_relay_reads_the_table_only_when_told_or_on_its_poll_and_deletes_what_went_out_together(
    infra: dict, monkeypatch,
) -> None:
    """Batches hand their rows to the running relay one after another, some with nothing to publish:
    every row goes out once and leaves the table, without a table read per batch (only the poll's, every
    POLL_S) and with one DELETE for many batches (at most one per FORGET_AFTER_S, and one per read).
    Both intervals are made long here, so the bounds hold however slow the machine."""
    from shared.contracts import WhistleClosed
    from shared.db import write_outbox
    from shared.ids import utcnow
    from shared.runtime import relay as relay_module
    from shared.runtime.relay import OutboxRelay

    pool, nc, heard = await _relay_rig(infra, "rtforget")
    monkeypatch.setattr(relay_module, "POLL_S", 20.0)
    monkeypatch.setattr(relay_module, "FORGET_AFTER_S", 2.0)
    relay = OutboxRelay(pool, nc, "rtforget")
    reads: list[float] = []
    deletes: list[int] = []
    drain, forget = relay._drain_once, relay._forget_published

    async def counted_drain():
        reads.append(time.monotonic())
        return await drain()

    async def counted_forget():
        if relay._gone:
            deletes.append(len(relay._gone))
        await forget()

    relay._drain_once, relay._forget_published = counted_drain, counted_forget  # type: ignore[method-assign]
    running = asyncio.create_task(relay.run())
    try:
        assert await until(lambda: _true(relay.leading and not relay._table_first))
        started, before = time.monotonic(), len(reads)
        sent = []
        for _ in range(20):
            async with pool.acquire() as conn, conn.transaction():
                handed = await write_outbox(
                    conn, [WhistleClosed(occurred_at=utcnow(), whistle_id=uuid4(), actor="system:test")])
            relay.handoff(handed)
            relay.handoff([])  # a batch that queued nothing
            sent += [q.body for q in handed]
            await asyncio.sleep(0.005)
        assert await until(lambda: _true(len(heard) == 20))
        took = time.monotonic() - started
        polls = int(took / relay_module.POLL_S) + 1
        assert len(reads) - before <= polls, f"{len(reads) - before} table reads in {took:.2f} s"
        assert await until(lambda: _rows_in(pool, "outbox", 0))  # _gone empties as its DELETE starts
        assert not relay._gone
        assert sorted(heard) == sorted(sent)  # each once
        assert sum(deletes) >= 20
        most = int(took / relay_module.FORGET_AFTER_S) + polls + 1
        assert len(deletes) <= most, f"{len(deletes)} deletes for 20 batches in {took:.2f} s"
    finally:
        relay.stop()
        await asyncio.wait_for(running, 10)
        await nc.close()
        await pool.close()


async def test_a_relay_stopped_while_it_deletes_stops_then_and_not_a_poll_later(infra: dict, monkeypatch) -> None:
    """stop() may come while the leading relay awaits its DELETE; its loop must not then clear the wake
    and sleep a whole poll (made 60 s here) before it sees it was stopped."""
    from shared.contracts import WhistleClosed
    from shared.db import write_outbox
    from shared.ids import utcnow
    from shared.runtime import relay as relay_module
    from shared.runtime.relay import OutboxRelay

    pool, nc, heard = await _relay_rig(infra, "rtstopped")
    monkeypatch.setattr(relay_module, "POLL_S", 60.0)
    relay = OutboxRelay(pool, nc, "rtstopped")
    forget = relay._forget_published

    async def stopped_meanwhile():  # the DELETE of what it published (the first drain deletes nothing)
        deleting = bool(relay._gone)
        await forget()
        if deleting:
            relay.stop()

    relay._forget_published = stopped_meanwhile  # type: ignore[method-assign]
    running = asyncio.create_task(relay.run())
    try:
        assert await until(lambda: _true(relay.leading and not relay._table_first))
        async with pool.acquire() as conn, conn.transaction():
            handed = await write_outbox(
                conn, [WhistleClosed(occurred_at=utcnow(), whistle_id=uuid4(), actor="system:test")])
        relay.handoff(handed)
        await asyncio.wait_for(asyncio.shield(running), 10)
        assert await until(lambda: _true(heard == [handed[0].body]))
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        relay.stop()
        await asyncio.wait_for(running, 70)
        await nc.close()
        await pool.close()


async def test_a_message_alone_goes_to_a_batch_handler_in_one_transaction_without_a_savepoint(
    infra: dict, tmp_path: Path,
) -> None:
    """At a district's rates most batches hold one message: BEGIN, the inbox claim, the handler's statement and
    COMMIT, four round trips (a savepoint around it, as a message retried alone gets, would make six)."""
    from prometheus_client import REGISTRY

    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "001_handled.sql").write_text("CREATE TABLE IF NOT EXISTS handled_alone (n int PRIMARY KEY);")
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    calls: list[list[int]] = []

    async def handle(conn, items, now):  # noqa: ARG001
        await conn.executemany("INSERT INTO handled_alone (n) VALUES ($1)", [(i.n,) for i in items])
        calls.append([i.n for i in items])
        return []

    def statements() -> float:
        return REGISTRY.get_sample_value("whistle_db_statements_total", {"service": "rtalone"}) or 0.0

    runtime = ServiceRuntime("rtalone", settings(infra), migrations)
    runtime.consume(Consumer("whistle.alone", handle, batch=True, durable="rtalone",
                             parse=lambda m: SimpleNamespace(**json.loads(m.data)), dedup=lambda item: UUID(item.id)))
    await runtime.start()
    n = 20
    try:
        await asyncio.sleep(1.0)  # the relay's first read and the runtime's start are behind us
        before = statements()
        for i in range(n):  # one at a time: each fetched alone
            await js.publish("whistle.alone", json.dumps({"id": str(uuid4()), "n": i, "whistle_id": f"w{i}"}).encode())
            assert await until(lambda i=i: _handled_alone(calls, i), timeout=10)
        await asyncio.sleep(0)
        spent = statements() - before
    finally:
        await runtime.stop()
        await nc.close()
    assert calls == [[i] for i in range(n)]
    # 4 a message, and the relay's own reads of its outbox meanwhile (one each half second, a few in all)
    assert 4 * n <= spent <= 4 * n + 12, spent


async def _handled_alone(calls: list[list[int]], i: int) -> bool:
    return bool(calls) and calls[-1] == [i]


async def test_a_lingering_consumer_gathers_messages_that_come_apart_into_one_batch(
    infra: dict, tmp_path: Path,
) -> None:
    """`linger_s`: a batch gathers that long after its first message, so messages that come a few at a time
    (a district's rates) share one transaction; without it each pause of a few milliseconds ends a batch."""
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    calls: dict[str, list[list[int]]] = {"lingering": [], "eager": []}

    def handler(name: str):
        async def handle(conn, items, now):  # noqa: ARG001
            calls[name].append([i.n for i in items])
            return []
        return handle

    runtime = ServiceRuntime("rtlinger", settings(infra), migrations)
    parse = lambda m: SimpleNamespace(**json.loads(m.data))  # noqa: E731
    runtime.consume(
        Consumer("whistle.lingering", handler("lingering"), batch=True, durable="rtlinger-lingering", parse=parse,
                 dedup=lambda item: UUID(item.id), linger_s=1.0),
        Consumer("whistle.eager", handler("eager"), batch=True, durable="rtlinger-eager", parse=parse,
                 dedup=lambda item: UUID(item.id)),
    )
    await runtime.start()
    try:
        await asyncio.sleep(0.5)
        started = time.monotonic()
        for i in range(5):  # 50 ms apart: well inside the second the lingering one gathers for
            for subject in ("whistle.lingering", "whistle.eager"):
                await js.publish(subject, json.dumps({"id": str(uuid4()), "n": i, "whistle_id": f"w{i}"}).encode())
            await asyncio.sleep(0.05)
        assert await until(lambda: _all_five(calls["lingering"]), timeout=10)
        assert await until(lambda: _all_five(calls["eager"]), timeout=10)
        waited = time.monotonic() - started
    finally:
        await runtime.stop()
        await nc.close()
    assert calls["lingering"] == [[0, 1, 2, 3, 4]], calls["lingering"]
    assert len(calls["eager"]) >= 2 and sum(calls["eager"], []) == [0, 1, 2, 3, 4], calls["eager"]
    assert waited >= 1.0  # the lingering batch was taken no sooner than a second after its first message


async def _all_five(calls: list[list[int]]) -> bool:
    return sum(len(c) for c in calls) == 5
