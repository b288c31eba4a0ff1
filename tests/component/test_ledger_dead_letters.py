"""The ledger's dead-letter recorder and replay on a real nats-server and a real Postgres (both embedded).

The runtime's dead letter and the server's max-deliveries advisory about the same delivery make one
record, with the runtime's error whichever came first; an advisory about the recorder's own
consumers is not taken for a lost whistle event; a replay republishes the message on its subject
through the outbox, under a new message id each time, for supervisors only.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import nats

from services.ledger.app import build
from services.ledger.settings import LedgerSettings
from shared import subjects
from shared.contracts import Location, Source, Tier, WhistleBlown
from shared.ids import uuid7
from shared.partitions import DEFAULT_PARTITIONS, stored_subject
from shared.streams import ensure_streams
from tests.component.conftest import until
from tests.signing import VERIFY_KEYS, wire

ADVISORY = subjects.MAX_DELIVERIES_ADVISORY


def _blown() -> WhistleBlown:
    return WhistleBlown(occurred_at=datetime.now(UTC), whistle_id=uuid7(), actor="dispatcher:test",
                        category="roof_leak", description="顶楼漏雨", location=Location(building="7"),
                        tier=Tier.routine, source=Source.community)


async def _ask(nc: nats.NATS, subject: str, role: str, payload: dict) -> dict:
    body = wire(subject, {"actor": {"role": role, "id": f"{role}-1"}, "payload": payload})
    return json.loads((await nc.request(subject, body, timeout=10)).data)


async def test_one_record_per_delivery_with_the_runtimes_error_and_none_for_the_recorders_own_consumers(
    infra: dict,
) -> None:
    nc = await nats.connect(infra["nats_url"])
    js = nc.jetstream()
    await ensure_streams(js)
    runtime = build(LedgerSettings.model_validate({
        "nats_url": infra["nats_url"], "database_url": infra["database_url"], "nice": 0, "batch_size": 64,
        "command_verify_keys": VERIFY_KEYS}))
    await runtime.start()
    try:
        first, second = _blown(), _blown()
        seqs = []
        for e in (first, second):
            ack = await js.publish(e.published_subject, e.model_dump_json().encode(), headers={"Nats-Msg-Id": str(e.event_id)})
            seqs.append(ack.seq)

        def advisory(seq: int, consumer: str) -> bytes:
            return json.dumps({"stream": "EVENTS", "consumer": consumer, "stream_seq": seq, "deliveries": 50}).encode()

        async def dead_letter(seq: int, consumer: str, error: str) -> None:
            stored = await js.get_msg("EVENTS", seq)  # as the runtime names it: the subject as stored
            await js.publish(f"{subjects.DEADLETTER}.routing", stored.data, headers={
                "Whistle-Reason": f"failed 5 times: {error}", "Whistle-Subject": stored.subject,
                "Whistle-Service": "routing", "Whistle-Stream": "EVENTS", "Whistle-Stream-Seq": str(seq),
                "Whistle-Consumer": consumer, "Whistle-Deliveries": "1",
                "Nats-Msg-Id": f"dl-routing-{consumer}-EVENTS-{seq}"})

        # the first: the advisory comes before the runtime's dead letter; the second: after it
        await js.publish(f"{ADVISORY}.EVENTS.routing-whistle-blown", advisory(seqs[0], "routing-whistle-blown"))

        async def rows() -> list[asyncpg.Record]:
            return await runtime.pool.fetch("SELECT * FROM dead_letters ORDER BY stream_seq")

        assert await until(lambda: _count(rows(), 1))
        await dead_letter(seqs[0], "routing-whistle-blown", "ValueError: no rule for this")
        await dead_letter(seqs[1], "routing-whistle-blown", "ValueError: no rule for that")
        await js.publish(f"{ADVISORY}.EVENTS.routing-whistle-blown", advisory(seqs[1], "routing-whistle-blown"))
        # an advisory about a recorder: about a dead letter, not a whistle event; and one for a message gone
        await js.publish(f"{ADVISORY}.DEADLETTER.ledger-deadletters", json.dumps(
            {"stream": "DEADLETTER", "consumer": "ledger-deadletters", "stream_seq": 1, "deliveries": 5}).encode())
        await js.publish(f"{ADVISORY}.EVENTS.escalation-summons", advisory(999_999, "escalation-summons"))
        assert await until(lambda: _count(rows(), 3))
        assert await until(lambda: _settled(js, "ADVISORIES", "ledger-advisories"))
        assert await until(lambda: _settled(js, "DEADLETTER", "ledger-deadletters"))

        recorded = await rows()
        assert len(recorded) == 3, [dict(r) for r in recorded]
        one, two, gone = recorded
        for row, e, error in ((one, first, "this"), (two, second, "that")):
            assert (row["stream"], row["consumer"], row["subject"], row["event_type"]) == (
                "EVENTS", "routing-whistle-blown", stored_subject("whistle.blown", e.whistle_id, DEFAULT_PARTITIONS),
                "whistle.blown")
            assert row["whistle_id"] == e.whistle_id and row["source"] == "runtime"
            assert row["reason"] == f"failed 5 times: ValueError: no rule for {error}" and row["deliveries"] == 5
        assert (gone["stream_seq"], gone["subject"], gone["body"], gone["consumer"]) == (
            999_999, "?", None, "escalation-summons")
        assert gone["reason"] == "failed 50 deliveries to consumer escalation-summons"

        # replay: supervisors only, known ids only, a message still held only
        with_ids = {r["stream_seq"]: r["id"] for r in recorded}
        assert (await _ask(nc, subjects.CMD_LEDGER_DEADLETTER_REPLAY, "dispatcher", {"id": with_ids[seqs[0]]}))[
            "refusal"]["status"] == 403
        for unknown in (10_000_000, "²", "x", None):
            reply = await _ask(nc, subjects.CMD_LEDGER_DEADLETTER_REPLAY, "supervisor", {"id": unknown})
            assert reply["refusal"]["status"] == 404, (unknown, reply)
        reply = await _ask(nc, subjects.CMD_LEDGER_DEADLETTER_REPLAY, "supervisor", {"id": with_ids[999_999]})
        assert reply["refusal"]["status"] == 409 and reply["refusal"]["code"] == "not_replayable"

        seen: asyncio.Queue = asyncio.Queue()
        sub = await nc.subscribe("whistle.blown.>", cb=seen.put)
        for n in (1, 2):
            reply = await _ask(nc, subjects.CMD_LEDGER_DEADLETTER_REPLAY, "supervisor", {"id": with_ids[seqs[0]]})
            assert reply["ok"] and reply["data"]["replays"] == n and reply["data"]["replayed_at"]
            m = await asyncio.wait_for(seen.get(), 10)
            # the original message, on its subject, once per replay
            assert m.data == first.model_dump_json().encode()
            assert m.headers["Nats-Msg-Id"] == f"replay-{with_ids[seqs[0]]}-{n}"
        await sub.unsubscribe()
        stored = await js.get_msg("EVENTS", seqs[1] + 2)
        assert stored.subject == stored_subject("whistle.blown", first.whistle_id, DEFAULT_PARTITIONS)
        assert stored.data == first.model_dump_json().encode()

        listed = await _ask(nc, subjects.QRY_LEDGER_DEADLETTERS, "supervisor", {"replayed": True})
        assert [d["id"] for d in listed["data"]["items"]] == [with_ids[seqs[0]]]
        never = await _ask(nc, subjects.QRY_LEDGER_DEADLETTERS, "supervisor", {"replayed": False})
        assert sorted(d["id"] for d in never["data"]["items"]) == sorted([with_ids[seqs[1]], with_ids[999_999]])
        # a page at a time, newest first
        page = (await _ask(nc, subjects.QRY_LEDGER_DEADLETTERS, "supervisor", {"limit": 2}))["data"]
        rest = (await _ask(nc, subjects.QRY_LEDGER_DEADLETTERS, "supervisor",
                           {"limit": 2, "cursor": page["next_cursor"]}))["data"]
        assert [d["id"] for d in page["items"] + rest["items"]] == sorted(with_ids.values(), reverse=True)
        assert rest["next_cursor"] is None
        shown = await _ask(nc, subjects.QRY_LEDGER_DEADLETTER, "supervisor", {"id": with_ids[seqs[0]]})
        assert shown["data"]["whistle_id"] == str(first.whistle_id) and shown["data"]["replays"] == 2
        assert (await _ask(nc, subjects.QRY_LEDGER_DEADLETTER, "responder", {"id": with_ids[seqs[0]]}))[
            "refusal"]["status"] == 403

        # a row from before the new columns: the whistle and event type are read from its body and subject
        await runtime.pool.execute(
            "INSERT INTO dead_letters (key, service, subject, reason, stream_seq, body, source)"
            " VALUES (gen_random_uuid(), 'ledger', 'summons.issued', 'failed 5 deliveries to consumer ledger-events',"
            " 5, $1, 'advisory')", second.model_dump_json().encode())
        old = (await _ask(nc, subjects.QRY_LEDGER_DEADLETTERS, "supervisor", {"limit": 1}))["data"]["items"][0]
        assert old["whistle_id"] == str(second.whistle_id) and old["event_type"] == "summons.issued"
    finally:
        await runtime.stop()
        await nc.close()


async def _count(rows, n: int) -> bool:
    return len(await rows) >= n


async def _settled(js, stream: str, durable: str) -> bool:
    info = await js.consumer_info(stream, durable)
    return not info.num_pending and not info.num_ack_pending


async def test_rows_recorded_before_the_migration_stay_readable_and_say_what_their_reason_tells(
    infra: dict,
) -> None:
    from services.ledger import dead_letter_store
    from shared.db import create_pool

    migrations = sorted((Path(__file__).parents[2] / "services" / "ledger" / "migrations").glob("*.sql"))
    this = next(i for i, path in enumerate(migrations) if path.name == "005_dead_letters.sql")
    migrations = migrations[:this + 1]  # the schema as it was just before this migration, then it
    pool = await create_pool(infra["database_url"], "ledger_before")
    try:
        async with pool.acquire() as conn:
            for path in migrations[:-1]:
                await conn.execute(path.read_text())
            blown = _blown()
            # as the old recorder wrote them: the 5,435 rows of an outage, and a malformed message
            await conn.executemany(
                "INSERT INTO dead_letters (key, service, subject, reason, stream_seq, body)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                [(uuid7(), "ledger", "whistle.blown", "failed 5 deliveries to consumer ledger-advisories", 9, None),
                 (uuid7(), "ledger", "whistle.blown", "failed 5 deliveries to consumer ledger-advisories", 9, None),
                 (uuid7(), "routing", "whistle.blown", "malformed: 1 validation error", 10,
                  blown.model_dump_json().encode())])
            await conn.execute(migrations[-1].read_text())
        rows = await dead_letter_store.dead_letters(pool, None, 10)
        assert [(r["source"], r["consumer"], r["deliveries"], r["stream"]) for r in rows] == [
            ("runtime", None, None, None), ("advisory", "ledger-advisories", 5, None),
            ("advisory", "ledger-advisories", 5, None)]
        assert rows[0]["whistle_id"] == str(blown.whistle_id) and rows[0]["event_type"] == "whistle.blown"
        assert all(r["replays"] == 0 and r["replayed_at"] is None for r in rows)
    finally:
        await pool.close()
