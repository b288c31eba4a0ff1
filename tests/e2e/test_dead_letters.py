"""Dead letters you can act on: a message that fails on its own is dead-lettered with its reason, and once
its cause is fixed a supervisor replays it; it is handled once, and a second replay changes nothing.

The poison: a `whistle.blown` for a whistle intake does not hold (as after intake's database was
restored from a backup older than the whistle). Routing and the ledger take it as any whistle, but
intake's grouping into problem classes cannot: a class member must be one of intake's whistles (a
foreign key), so `intake-events` fails on it every time and dead-letters it. Restoring intake's row
fixes the cause; the replay then groups it, and routing and the ledger find it in their inbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import asyncpg
import nats

from shared.contracts import Location, Source, Tier, WhistleBlown
from shared.ids import uuid7
from shared.partitioned import consumer_name
from shared.partitions import DEFAULT_PARTITIONS, stored_subject
from tests.e2e.conftest import ROOT, System, wait_for

CATEGORY, BUILDING = "parking", "11"  # no other e2e test blows parking, nor anything at building 11


def _classes(system: System) -> list[dict]:
    with system.client("dispatcher") as c:
        r = c.get("/v1/classes", params={"category": CATEGORY, "building": BUILDING})
    assert r.status_code == 200, r.text
    return r.json()


def _dead_letters(system: System, **params) -> list[dict]:
    with system.client("supervisor") as c:
        r = c.get("/v1/dead-letters", params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def _publish(system: System, event: WhistleBlown) -> int:
    nc = await nats.connect(system.nats_url)
    try:
        ack = await nc.jetstream().publish(event.published_subject, event.model_dump_json().encode(),
                                           headers={"Nats-Msg-Id": str(event.event_id)})
        return ack.seq
    finally:
        await nc.close()


async def _restore_intakes_row(system: System, e: WhistleBlown) -> None:
    """The operator's fix: the whistle back in intake's table, as its event tells it."""
    conn = await asyncpg.connect(host=str(system.home / "pg"), user="postgres", database="postgres")
    try:
        await conn.execute(
            "INSERT INTO intake.whistles (id, category, description, location, tier, source, raised_by, raised_at)"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8)",
            e.whistle_id, e.category, e.description, e.location.model_dump_json(), e.tier.value, e.source.value,
            e.actor, e.occurred_at)
    finally:
        await conn.close()


async def _settled_after_replay(system: System, msg_id: str) -> None:
    """The replay is in the stream, and every consumer of whistle.blown has acknowledged it."""
    nc = await nats.connect(system.nats_url)
    js = nc.jetstream()
    try:
        for _ in range(300):
            last = await js.get_msg("EVENTS", subject="whistle.blown.>")
            if (last.headers or {}).get("Nats-Msg-Id") == msg_id:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{msg_id} never reached the EVENTS stream")
        for _ in range(600):
            floors = [(await js.consumer_info("EVENTS", consumer_name(d, range(DEFAULT_PARTITIONS))))
                      .ack_floor.stream_seq for d in ("intake-events", "routing-events", "ledger-events")]
            if min(floors) >= last.seq:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"consumers still behind the replay (seq {last.seq}): {floors}")
    finally:
        await nc.close()


def _replay(system: System, dead_letter_id: int) -> dict:
    with system.client("supervisor") as c:
        r = c.post(f"/v1/dead-letters/{dead_letter_id}/replay")
    assert r.status_code == 202, r.text
    return r.json()


def _of_type(whistle: dict, kind: str) -> list[dict]:
    return [t for t in whistle["timeline"] if t["type"] == kind]


def test_a_poison_message_is_dead_lettered_with_its_reason_replayed_after_the_fix_and_handled_once(
        system: System) -> None:
    # a real complaint about parking at building 11 starts a problem class
    first = system.blow(category=CATEGORY, location={"building": BUILDING}, description="车位被占 / parking taken")
    wait_for(lambda: [c for c in _classes(system) if c["member_whistle_ids"] == [first]], what="the first's class")

    poison = WhistleBlown(occurred_at=datetime.now(UTC), whistle_id=uuid7(), actor="dispatcher:restored",
                          category=CATEGORY, description="车位被占 again / parking taken again",
                          location=Location(building=BUILDING), tier=Tier.routine, source=Source.hotline_12345)
    seq = asyncio.run(_publish(system, poison))
    wid = str(poison.whistle_id)

    def recorded() -> list[dict]:
        return [d for d in _dead_letters(system) if d["whistle_id"] == wid]

    # tried in place a few times (intake's grouping only), then dead-lettered with the last error
    (letter,) = wait_for(recorded, timeout=60, interval=0.5, what="the poison's dead letter")
    assert (letter["stream"], letter["stream_seq"], letter["subject"], letter["event_type"]) == (
        "EVENTS", seq, stored_subject("whistle.blown", wid, DEFAULT_PARTITIONS), "whistle.blown")
    assert (letter["consumer"], letter["service"], letter["deliveries"], letter["source"]) == (
        consumer_name("intake-events", range(DEFAULT_PARTITIONS)), "intake", 5, "runtime")  # one replica: every partition
    assert "ForeignKeyViolationError" in letter["reason"] and "foreign key" in letter["reason"], letter["reason"]
    assert letter["replays"] == 0 and letter["replayed_at"] is None
    assert json.loads(letter["body"])["event_id"] == str(poison.event_id)
    # everyone else handled it: routing summoned someone, the ledger has it; the class does not
    summoned = system.wait_summons(wid)
    assert len(summoned["summons"]) == 1 and len(_of_type(summoned, "whistle.blown")) == 1
    assert [c["member_whistle_ids"] for c in _classes(system)] == [[first]]
    assert letter["id"] in {d["id"] for d in _dead_letters(system, replayed="false")}

    asyncio.run(_restore_intakes_row(system, poison))
    replayed = _replay(system, letter["id"])
    assert replayed["id"] == letter["id"] and replayed["replays"] == 1 and replayed["replayed_at"]
    asyncio.run(_settled_after_replay(system, f"replay-{letter['id']}-1"))

    (joined,) = wait_for(lambda: [c for c in _classes(system) if c["size"] == 2], what="the poison in the class")
    assert joined["member_whistle_ids"] == [first, wid]
    for member in (first, wid):  # the class told both, once
        assert [t["data"]["class_id"] for t in _of_type(system.whistle(member), "whistle.grouped")] == [joined["id"]]
    after = system.whistle(wid)
    assert len(after["summons"]) == 1 and len(_of_type(after, "summons.issued")) == 1  # routing: a duplicate
    assert len(_of_type(after, "whistle.blown")) == 1
    with system.client("supervisor") as c:
        shown = c.get(f"/v1/dead-letters/{letter['id']}").json()
    assert shown["replays"] == 1 and shown["replayed_at"] == replayed["replayed_at"]
    assert letter["id"] in {d["id"] for d in _dead_letters(system, replayed="true")}
    assert letter["id"] not in {d["id"] for d in _dead_letters(system, replayed="false")}

    # a second replay of a handled message: every consumer finds it in its inbox, nothing changes
    again = _replay(system, letter["id"])
    assert again["replays"] == 2
    asyncio.run(_settled_after_replay(system, f"replay-{letter['id']}-2"))
    assert [(c["size"], c["member_whistle_ids"]) for c in _classes(system)] == [(2, [first, wid])]
    twice = system.whistle(wid)  # (its clocks may have added to the timeline meanwhile, nothing else)
    assert len(twice["summons"]) == 1
    for kind in ("whistle.blown", "summons.issued", "whistle.grouped"):
        assert _of_type(twice, kind) == _of_type(after, kind), kind
    assert [d["id"] for d in recorded()] == [letter["id"]]  # and it was not dead-lettered again


def test_only_supervisors_see_and_replay_dead_letters_and_unknown_ones_are_404(system: System) -> None:
    marker = f"refusals-{uuid7()}"

    async def publish_malformed() -> None:
        nc = await nats.connect(system.nats_url)
        try:
            await nc.jetstream().publish(f"whistle.blown.{uuid7()}", json.dumps({"marker": marker}).encode(),
                                         headers={"Nats-Msg-Id": marker})
        finally:
            await nc.close()

    asyncio.run(publish_malformed())
    letter = wait_for(lambda: next((d for d in _dead_letters(system) if marker in d["body"]), None),
                      what="a malformed message's dead letter")
    assert "malformed" in letter["reason"] and letter["stream"] == "EVENTS" and letter["whistle_id"] is None

    for who in ("dispatcher", "d-housing"):
        with system.client(who) as c:
            for r in (c.post(f"/v1/dead-letters/{letter['id']}/replay"), c.get(f"/v1/dead-letters/{letter['id']}"),
                      c.get("/v1/dead-letters")):
                assert r.status_code == 403, (who, r.request.url, r.text)
                assert r.json()["error"]["code"] == "supervisor_only"
    with system.client("supervisor") as c:
        # "½" stays no number once NFKC-normalised ("1⁄2"); "²" would be dead letter 2 (ids are normalised)
        for unknown in ("999999999", "abc", "½"):
            for r in (c.post(f"/v1/dead-letters/{unknown}/replay"), c.get(f"/v1/dead-letters/{unknown}")):
                assert r.status_code == 404, (unknown, r.request.url, r.text)
                assert r.json()["error"]["code"] == "no_such_dead_letter"
        assert c.get(f"/v1/dead-letters/{letter['id']}").json()["replays"] == 0  # a refusal changed nothing

    # the same from the command line, which reads the tokens from WHISTLE_HOME
    env = {**os.environ, "WHISTLE_HOME": str(system.home)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services.cli.main", "dead-letters", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    shown = cli("show", str(letter["id"]))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == letter["id"]
    listed = cli("list", "--not-replayed")
    assert listed.returncode == 0 and any(line.split()[0] == str(letter["id"]) for line in listed.stdout.splitlines())
    refused = cli("replay", str(letter["id"]), "--as", "dispatcher")
    assert refused.returncode == 1 and json.loads(refused.stdout)["error"]["code"] == "supervisor_only"
