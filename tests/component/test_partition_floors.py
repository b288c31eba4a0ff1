"""Where a partitioned consumer stands is kept in Postgres (shared/partitioned.py): each batch's
transaction writes the consumer's floor per partition, and a partition's NATS consumer lives in memory,
made afresh just after that floor when a replica takes the partition or NATS has forgotten it.

These tests run a real runtime, nats-server and Postgres; the consumer has no inbox (`dedup` None), so a
message delivered again after a restart or a handover would be handled again and counted."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections import Counter
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import nats
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy

from services.cli.embedded import start_nats
from shared.contracts import WhistleClosed
from shared.ids import utcnow
from shared.partitioned import consumer_name, durable_for, family_of, floor_in_hand, partition_filter_for
from shared.partitions import DEFAULT_PARTITIONS, partition_of, published_subject
from shared.runtime import Consumer, ServiceRuntime
from shared.settings import ServiceSettings
from shared.streams import consumer_config, ensure_streams
from tests.component.conftest import until
from tests.e2e.conftest import free_port

DURABLE = "floors"


def counted_table(tmp_path: Path) -> Path:
    migrations = tmp_path / "migrations"
    migrations.mkdir(exist_ok=True)
    (migrations / "001_handled.sql").write_text(
        "CREATE TABLE IF NOT EXISTS handled (whistle_id uuid NOT NULL, at timestamptz DEFAULT clock_timestamp());")
    return migrations


async def handle(conn, events, now):  # noqa: ARG001
    await conn.executemany("INSERT INTO handled (whistle_id) VALUES ($1)", [(e.whistle_id,) for e in events])
    return []


def runtime_of(schema: str, infra: dict, nats_url: str, migrations: Path, replica: str, handler=handle,
               **overrides) -> ServiceRuntime:
    settings = ServiceSettings.model_validate({
        "nats_url": nats_url, "database_url": infra["database_url"], "replica": replica, "batch_size": 32,
        "lease_round_s": 0.3, "lease_ttl_s": 2.0, **overrides,
    })
    runtime = ServiceRuntime(schema, settings, migrations)
    runtime.consume(Consumer(WhistleClosed.SUBJECT, handler, durable=DURABLE, batch=True, dedup=lambda _: None))
    return runtime


async def publish(js, n: int) -> dict[UUID, tuple[int, int]]:
    """n whistles closed: each one's (partition, stream sequence)."""
    out = {}
    for _ in range(n):
        whistle = uuid4()
        event = WhistleClosed(occurred_at=utcnow(), whistle_id=whistle, actor="system:test")
        for _ in range(100):  # NATS just restarted: JetStream answers once it has recovered its streams
            try:
                ack = await js.publish(published_subject(WhistleClosed.SUBJECT, whistle),
                                       event.model_dump_json().encode(), headers={"Nats-Msg-Id": str(event.event_id)})
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                await asyncio.sleep(0.2)
        out[whistle] = (partition_of(str(whistle), DEFAULT_PARTITIONS), ack.seq)
    return out


async def counts(db: str, schema: str) -> dict[UUID, int]:
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(f"SELECT whistle_id, count(*) AS n FROM {schema}.handled GROUP BY whistle_id")
        return {r["whistle_id"]: r["n"] for r in rows}
    finally:
        await conn.close()


async def floors(db: str, schema: str) -> dict[int, int]:
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(f"SELECT partition, stream_seq FROM {schema}.consumer_floors WHERE durable = $1",
                                DURABLE)
        return {r["partition"]: r["stream_seq"] for r in rows}
    finally:
        await conn.close()


async def handled_once_with_floors_at_the_last(db: str, schema: str, published: dict) -> None:
    """Every message handled exactly once, and each partition's floor at its last message."""
    await asyncio.sleep(1.0)  # anything delivered again would be handled by now
    handled = await counts(db, schema)
    assert set(handled) == set(published)
    assert [w for w, n in handled.items() if n != 1] == [], "a message handled twice"
    assert await until(lambda: _floors_are(db, schema, last_of_each_partition(published)), 10)


async def events_on(nats_url: str, **options):
    """A connection to `nats_url` and its JetStream, with the streams made."""
    nc = await nats.connect(nats_url, **options)
    js = nc.jetstream()
    await ensure_streams(js)
    return nc, js


def last_of_each_partition(published: dict[UUID, tuple[int, int]]) -> dict[int, int]:
    last: dict[int, int] = {}
    for partition, seq in published.values():
        last[partition] = max(last.get(partition, 0), seq)
    return last


@pytest.fixture
def own_nats(tmp_path: Path):
    """A nats-server of this test's own, which it may kill and start again on the same port and store."""
    port = free_port()
    state = {"proc": start_nats(tmp_path, port, tmp_path / "nats.log")}

    def restart() -> None:
        state["proc"].send_signal(signal.SIGKILL)
        state["proc"].wait()
        state["proc"] = start_nats(tmp_path, port, tmp_path / "nats.log")

    yield f"nats://127.0.0.1:{port}", restart
    proc: subprocess.Popen = state["proc"]
    proc.terminate()
    proc.wait(timeout=10)


async def test_floors_follow_the_work_and_nothing_is_handled_twice_across_a_nats_restart_or_a_handover(
    infra: dict, tmp_path: Path, own_nats,
) -> None:
    nats_url, restart_nats = own_nats
    db, schema = infra["database_url"], "rtfloors"
    migrations = counted_table(tmp_path)
    nc, js = await events_on(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    first = runtime_of(schema, infra, nats_url, migrations, "floors-a")
    await first.start()
    second = None
    try:
        published = await publish(js, 200)
        assert await until(lambda: _all_handled(db, schema, published), 60)
        # every message settled: each partition's floor is its last message
        assert await until(lambda: _floors_are(db, schema, last_of_each_partition(published)), 10)
        some = consumer_name(DURABLE, range(DEFAULT_PARTITIONS))  # alone, it holds every partition
        assert (await js.consumer_info("EVENTS", some)).config.mem_storage  # no state file rewritten 10×/s

        restart_nats()  # kill -9: the in-memory consumers are gone with it
        await until(lambda: _connected(nc), 30)
        published |= await publish(js, 200)
        assert await until(lambda: _all_handled(db, schema, published), 60), "made again from the floors"

        await first.stop()  # its partitions go back; the next replica starts where it stopped
        published |= await publish(js, 100)
        second = runtime_of(schema, infra, nats_url, migrations, "floors-b")
        await second.start()
        assert await until(lambda: _all_handled(db, schema, published), 60)
        await handled_once_with_floors_at_the_last(db, schema, published)
    finally:
        if second is not None:
            await second.stop()
        await first.stop()
        await nc.close()


async def family(js) -> dict[str, tuple[str, ...]]:
    """The consumers of DURABLE's family on EVENTS: name → filters."""
    out = {}
    for info in await js.consumers_info("EVENTS"):
        if family_of(info.name) == DURABLE:
            out[info.name] = tuple(info.config.filter_subjects or [info.config.filter_subject])
    return out


def partitions_of(filters: tuple[str, ...]) -> set[int]:
    return {int(f.split(".")[2]) for f in filters if f.split(".")[2] != "*"}


async def test_each_replica_has_one_consumer_over_the_partitions_it_holds_and_one_left_takes_them_all(
    infra: dict, tmp_path: Path, own_nats,
) -> None:
    """Two replicas: one consumer each, filtered to disjoint partitions that cover every one; the
    survivor's consumer, made again from the floors (its own partitions' higher than the ones it
    takes over), is unfiltered by partition, the other's is gone, and no message is handled twice."""
    nats_url, _ = own_nats
    db, schema = infra["database_url"], "rtfloorstwo"
    migrations = counted_table(tmp_path)
    nc, js = await events_on(nats_url)
    first = runtime_of(schema, infra, nats_url, migrations, "two-a")
    second = runtime_of(schema, infra, nats_url, migrations, "two-b")
    await first.start()
    try:
        published = await publish(js, 100)
        assert await until(lambda: _all_handled(db, schema, published), 60)
        assert list((await family(js)).values()) == [(partition_filter_for(WhistleClosed.SUBJECT, "*"),)]
        await second.start()

        async def shared_out() -> bool:
            made = await family(js)
            held = [partitions_of(filters) for filters in made.values()]
            return len(made) == 2 and all(held) and set().union(*held) == set(range(DEFAULT_PARTITIONS)) \
                and sum(len(h) for h in held) == DEFAULT_PARTITIONS

        assert await until(shared_out, 20), await family(js)
        published |= await publish(js, 200)
        assert await until(lambda: _all_handled(db, schema, published), 60)
        assert set(first.keeper.held) | set(second.keeper.held) == set(range(DEFAULT_PARTITIONS))

        await second.stop()
        published |= await publish(js, 100)
        assert await until(lambda: _all_handled(db, schema, published), 60)

        async def one_left() -> bool:
            return list((await family(js)).values()) == [(partition_filter_for(WhistleClosed.SUBJECT, "*"),)]

        assert await until(one_left, 20), await family(js)
        assert list(await family(js)) == [consumer_name(DURABLE, range(DEFAULT_PARTITIONS))]
        await handled_once_with_floors_at_the_last(db, schema, published)
    finally:
        await second.stop()
        await first.stop()
        await nc.close()


async def test_a_stream_made_again_behind_its_floors_is_read_from_its_start(infra: dict, tmp_path: Path, own_nats) -> None:
    """NATS's store lost and the stream made again: its sequences start over, below the floors Postgres
    kept, and everything in it is new (skipping up to the old floors would lose it)."""
    nats_url, _ = own_nats
    db, schema = infra["database_url"], "rtfloorsagain"
    migrations = counted_table(tmp_path)
    nc, js = await events_on(nats_url)
    runtime = runtime_of(schema, infra, nats_url, migrations, "again-a")
    await runtime.start()
    try:
        published = await publish(js, 120)
        assert await until(lambda: _all_handled(db, schema, published), 60)
    finally:
        await runtime.stop()
    await js.delete_stream("EVENTS")
    await ensure_streams(js)
    again = await publish(js, 40)  # sequences 1..40, below every floor
    runtime = runtime_of(schema, infra, nats_url, migrations, "again-b")
    await runtime.start()
    try:
        assert await until(lambda: _all_handled(db, schema, published | again), 60), "skipped up to the old floors"
    finally:
        await runtime.stop()
        await nc.close()


async def test_a_durable_from_before_floors_were_kept_starts_from_its_own_acknowledgement_floor(
    infra: dict, tmp_path: Path,
) -> None:
    """An upgrade: the partitions' file-backed durables know how far they got, Postgres does not yet."""
    db, schema = infra["database_url"], "rtfloorsupgrade"
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    await js.purge_stream("EVENTS")
    before = await publish(js, 60)
    for p in range(DEFAULT_PARTITIONS):  # as the runtime of before left them: everything taken and acked
        name = durable_for(DURABLE, p)
        await js.add_consumer("EVENTS", consumer_config(
            name, max_deliver=5, ack_wait_s=30, filters=(partition_filter_for(WhistleClosed.SUBJECT, p),)))
        sub = await js.pull_subscribe_bind(name, "EVENTS")
        while True:
            try:
                msgs = await sub.fetch(100, timeout=0.5)
            except nats.errors.TimeoutError:
                break
            for m in msgs:
                await m.ack_sync()
        await sub.unsubscribe()
    after = await publish(js, 60)
    runtime = runtime_of(schema, infra, infra["nats_url"], counted_table(tmp_path), "upgrade-a")
    await runtime.start()
    try:
        assert await until(lambda: _all_handled(db, schema, after), 60)
        await asyncio.sleep(1.0)
        handled = await counts(db, schema)
        assert set(handled) == set(after) and set(handled).isdisjoint(before)
        assert all(n == 1 for n in handled.values())
    finally:
        await runtime.stop()
        await nc.close()


async def test_a_batch_is_acknowledged_with_one_message_and_never_past_a_whistle_still_blocked(
    infra: dict, tmp_path: Path, own_nats,
) -> None:
    """The consumer's policy is AckPolicy.ALL: a batch costs one acknowledgement, not one per message, and
    while a whistle is blocked behind a failure nothing at or after it is acknowledged (a NATS restart then
    would deliver it again, and with it what was handled after it, which the floors drop). It stays blocked
    longer than the ack wait, and what was handled after it is not sent again meanwhile (the consumer has no
    inbox: a message sent again would be handled, and counted, twice)."""
    nats_url, _ = own_nats
    db, schema = infra["database_url"], "rtfloorsacks"
    nc, js = await events_on(nats_url)
    published = await publish(js, 150)
    seq_of = {w: seq for w, (_, seq) in published.items()}
    bad = sorted(published, key=seq_of.get)[49]
    attempts, log = Counter(), []

    async def failing_four_times(conn, events, now):
        if any(e.whistle_id == bad for e in events):
            attempts[bad] += 1
            if attempts[bad] < 5:  # retried after 0.5, 1, 2 and 4 s: blocked twice the ack wait and more
                raise ValueError("not yet")
            log.append(("passed", seq_of[bad]))
        await handle(conn, events, now)
        return []

    async def acked(m) -> None:
        seq = Msg.Metadata._from_reply(m.subject).sequence.stream
        log.append(("ack" if m.data in (b"", b"+ACK") else "kept", seq))  # else +WPI: still being worked on

    await nc.subscribe("$JS.ACK.EVENTS.>", cb=acked)
    runtime = runtime_of(schema, infra, nats_url, counted_table(tmp_path), "acks-a", handler=failing_four_times,
                         ack_wait_s=3.0)
    await runtime.start()
    try:
        assert await until(lambda: _all_handled(db, schema, published), 60)
        await handled_once_with_floors_at_the_last(db, schema, published)
        info = await js.consumer_info("EVENTS", consumer_name(DURABLE, range(DEFAULT_PARTITIONS)))
        assert info.config.ack_policy == AckPolicy.ALL
        assert (info.num_ack_pending, info.num_redelivered) == (0, 0)
        assert info.ack_floor.stream_seq == max(seq_of.values())
        acks = [seq for what, seq in log if what == "ack"]
        assert 0 < len(acks) < len(published) / 4, acks  # a few a batch, not one a message
        passed = log.index(("passed", seq_of[bad]))
        assert attempts[bad] == 5
        assert any(what == "kept" and seq > seq_of[bad] for what, seq in log[:passed]), "nothing kept meanwhile"
        assert all(seq < seq_of[bad] for what, seq in log[:passed] if what == "ack"), log
    finally:
        await runtime.stop()
        await nc.close()


def test_a_partition_floor_is_just_below_the_first_message_still_in_hand() -> None:
    in_hand, top = {12, 15, 20}, 20
    assert floor_in_hand(in_hand, top, set()) == 11
    assert floor_in_hand(in_hand, top, {12}) == 14  # 12 settles with this transaction: 15 still holds it down
    assert floor_in_hand(in_hand, top, {12, 15, 20}) == 20  # nothing left in hand: all taken is handled
    assert floor_in_hand(set(), top, set()) == 20


async def _all_handled(db: str, schema: str, published: dict) -> bool:
    try:
        return set(await counts(db, schema)) >= set(published)
    except asyncpg.UndefinedTableError:
        return False


async def _floors_are(db: str, schema: str, expected: dict[int, int]) -> bool:
    return await floors(db, schema) == expected


async def _connected(nc) -> bool:
    return nc.is_connected
