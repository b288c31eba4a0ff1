"""Nothing is lost: a crashed service is restarted and catches up; poison messages are dead-lettered."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import nats

from tests.e2e.conftest import System, publish_again, wait_for


async def _blow_many(system: System, n: int, during=None) -> list[str]:
    headers = {"Authorization": f"Bearer {system.token('dispatcher')}"}
    body = {"category": "clothes_drying", "description": "no drying poles / 没处晾衣服",
            "location": {"building": "5"}, "tier": "routine"}
    async with httpx.AsyncClient(base_url=system.base_url, headers=headers, timeout=30) as c:
        async def one(i: int) -> str:
            if during and i == n // 3:
                during()
            r = await c.post("/v1/whistles", json=body)
            assert r.status_code == 201, r.text
            return r.json()["id"]

        ids = []
        for start in range(0, n, 20):  # in waves, so the kill lands while whistles are in flight
            ids += await asyncio.gather(*(one(i) for i in range(start, min(n, start + 20))))
        return ids


def test_killing_routing_mid_flight_loses_none_and_duplicates_none(system: System) -> None:
    before = system.pids()["routing"]
    ids = asyncio.run(_blow_many(system, 120, during=lambda: os.kill(before, signal.SIGKILL)))
    wait_for(lambda: system.pids()["routing"] != before, timeout=30, what="routing restarted")

    def all_summoned() -> bool:
        return all(system.whistle(i).get("summons") for i in ids)

    wait_for(all_summoned, timeout=90, interval=0.5, what="every whistle summoned")
    time.sleep(2)  # let any duplicate that would come arrive
    for whistle_id in ids:
        w = system.whistle(whistle_id)
        issued = [t for t in w["timeline"] if t["type"] == "summons.issued"]
        assert len(w["summons"]) == 1 and len(issued) == 1, (whistle_id, w["timeline"])


def test_poison_message_is_dead_lettered_with_its_reason(system: System) -> None:
    marker = f"poison-{uuid.uuid4()}"

    async def publish() -> None:
        nc = await nats.connect(system.nats_url)
        try:
            await nc.jetstream().publish(  # a whistle's subject, a body that is no whistle
                f"whistle.blown.{uuid.uuid4()}", json.dumps({"not": "a whistle", "marker": marker}).encode(),
                headers={"Nats-Msg-Id": marker},
            )
        finally:
            await nc.close()

    asyncio.run(publish())

    def dead_letters() -> list[dict]:
        with system.client("supervisor") as c:
            return [d for d in c.get("/v1/dead-letters").json() if marker in d["body"]]

    # every consumer of whistle.blown records its own (intake, the notifier too): wait for the two named
    letters = wait_for(lambda: (found := dead_letters()) and {d["service"] for d in found} >= {"routing", "ledger"}
                       and found, timeout=30, what="dead letters")
    # routing and the ledger both consume whistle.blown; each rejects it with the validation error
    assert {d["service"] for d in letters} >= {"routing", "ledger"}
    assert all(d["event_type"] == "whistle.blown" and "malformed" in d["reason"] for d in letters)
    with system.client("dispatcher") as c:
        assert c.get("/v1/dead-letters").status_code == 403  # supervisors only
    # the services are still healthy and the loop still works after the poison
    assert httpx.get(f"{system.base_url}/healthz").status_code == 200
    system.wait_summons(system.blow())


def test_a_redelivered_summons_issued_changes_nothing(system: System) -> None:
    """Response and escalation take summons.issued without an inbox (response's insert is ON CONFLICT
    DO NOTHING; escalation starts clocks only for a summons that has none): the same event again,
    after the responder has reported, neither adds a summons, nor resets its state, nor starts its
    clocks again."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    whistle_id = system.blow(tier="routine")
    summons = system.wait_summons(whistle_id)["summons"][0]
    with system.client(summons["responder_id"]) as responder:
        assert responder.post(f"/v1/summons/{summons['id']}/report").status_code == 200

    asyncio.run(publish_again(system, "summons.issued.>", since, lambda e: e["summons_id"] == summons["id"],
                              ("response-summons-issued", "escalation-summons", "ledger-events")))
    with system.client(summons["responder_id"]) as responder:
        mine = [s for s in responder.get("/v1/summons").json() if s["id"] == summons["id"]]
    assert len(mine) == 1 and mine[0]["state"] == "reported", mine
    started = [t for t in system.whistle(whistle_id)["timeline"] if t["type"] == "sla.started"]
    assert len(started) == 1, started


def test_the_ledger_takes_an_event_it_holds_once_without_an_inbox(system: System) -> None:
    """The ledger's timeline is its inbox: summons.issued again, twice (one batch may hold both), after the
    summons was resolved, neither sets the whistle back to dispatched nor adds to its timeline."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    whistle_id = system.blow(tier="routine")
    summons = system.wait_summons(whistle_id)["summons"][0]
    with system.client(summons["responder_id"]) as responder:
        for action in ("report", "arrive", "resolve"):
            assert responder.post(f"/v1/summons/{summons['id']}/{action}", json={"note": action}).status_code == 200
    wait_for(lambda: system.whistle(whistle_id)["status"] == "resolved", what="resolved in the ledger")

    asyncio.run(publish_again(system, "summons.issued.>", since, lambda e: e["summons_id"] == summons["id"],
                              ("ledger-events",), copies=2))
    after = system.whistle(whistle_id)
    assert (after["status"], [s["state"] for s in after["summons"]]) == ("resolved", ["resolved"]), after
    assert len([t for t in after["timeline"] if t["type"] == "summons.issued"]) == 1, after["timeline"]

