"""`whistle up --cluster`: three NATS nodes, every stream R3. A node killed with -9 loses nothing:
whistles blown before and while it is down get their summons, their report clocks (R3 schedules)
fire once each, and the runner starts the node again, which catches up."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator

import nats
import pytest
from nats.js.api import StreamInfo

from services.cli.embedded import process_alive
from shared import subjects
from shared.settings import nats_servers
from tests.e2e.conftest import System, wait_for, whistle_up

NODES = ("nats-1", "nats-2", "nats-3")
STREAMS = (subjects.EVENTS_STREAM, subjects.CLOCKS_STREAM, subjects.DEADLETTER_STREAM, subjects.ADVISORIES_STREAM)
BODY = {"category": "elderly_care", "description": "visit an empty-nest elder / 看望空巢老人",
        "location": {"building": "9"}, "tier": "urgent"}  # test policy: report within 15 s, no warning


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with whistle_up(tmp_path_factory, cluster=True) as system:
        yield system


def streams(system: System) -> dict[str, StreamInfo]:
    async def infos() -> dict[str, StreamInfo]:
        nc = await nats.connect(nats_servers(system.nats_url), connect_timeout=2)
        try:
            js = nc.jetstream(timeout=5)
            return {name: await js.stream_info(name) for name in STREAMS}
        finally:
            await nc.close()

    return asyncio.run(infos())


def replicated(info: StreamInfo) -> bool:
    """Three copies with a leader, both followers current: the stream lost no node."""
    c = info.cluster
    return bool(c and c.leader and len(c.replicas or []) == 2 and all(p.current and not p.offline for p in c.replicas))


def lead_elsewhere(system: System, stream: str, node: str) -> None:
    """The stream's leader on another node than `node` (a stepdown naming the preferred one)."""
    if streams(system)[stream].cluster.leader != node:
        return

    async def step_down() -> None:
        nc = await nats.connect(nats_servers(system.nats_url), connect_timeout=2)
        try:
            body = {"placement": {"preferred": next(n for n in NODES if n != node)}}
            await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", json.dumps(body).encode(), timeout=5)
        finally:
            await nc.close()

    asyncio.run(step_down())

    def leader() -> str | None:
        try:
            return streams(system)[stream].cluster.leader
        except nats.errors.Error:  # a stream that is electing answers nothing for a moment: ask again
            return None

    wait_for(lambda: leader() not in (None, node), what=f"{stream} led elsewhere")


def timeline(system: System, whistle_id: str) -> list[str]:
    return [t["type"] for t in system.whistle(whistle_id).get("timeline", [])]


def test_three_nodes_hold_every_stream(cluster: System) -> None:
    assert set(NODES) <= set(cluster.pids()) and "nats" not in cluster.pids()
    infos = wait_for(lambda: (i := streams(cluster)) and all(replicated(s) for s in i.values()) and i,
                     timeout=30, what="every stream on three current nodes")
    assert {name: info.config.num_replicas for name, info in infos.items()} == dict.fromkeys(STREAMS, 3)
    assert infos[subjects.CLOCKS_STREAM].config.allow_msg_schedules


def test_kill_9_a_node_loses_no_whistle_and_no_clock(cluster: System) -> None:
    before = [cluster.blow(**BODY) for _ in range(5)]
    for whistle_id in before:
        cluster.wait_summons(whistle_id)
        wait_for(lambda: "sla.started" in timeline(cluster, whistle_id), what=f"report clock of {whistle_id}")

    # the node leading the events stream (its followers must elect a new leader), killed while the
    # runner is paused: it stays down until the clocks armed before have fired on the two nodes left.
    # The dead letters are led from elsewhere: they take what the events stream cannot while it elects
    node = streams(cluster)[subjects.EVENTS_STREAM].cluster.leader
    lead_elsewhere(cluster, subjects.DEADLETTER_STREAM, node)
    os.kill(cluster.proc.pid, signal.SIGSTOP)
    try:
        killed = cluster.kill_nats(node)
        after = [cluster.blow(**BODY) for _ in range(5)]
        for whistle_id in after:
            cluster.wait_summons(whistle_id, timeout=60)
            wait_for(lambda: "sla.started" in timeline(cluster, whistle_id), what=f"report clock of {whistle_id}")
        # the report deadline is 15 s after each summons
        wait_for(lambda: all("escalation.raised" in timeline(cluster, w) for w in before), timeout=60,
                 interval=1.0, what="the clocks armed before the kill fired")
    finally:
        os.kill(cluster.proc.pid, signal.SIGCONT)
    wait_for(lambda: all("escalation.raised" in timeline(cluster, w) for w in after), timeout=60,
             interval=1.0, what="the clocks armed after the kill fired")
    time.sleep(3)  # a duplicate firing would land by now
    for whistle_id in before + after:
        kinds = timeline(cluster, whistle_id)
        assert kinds.count("sla.breached") == 1 and kinds.count("summons.issued") == 1, (whistle_id, kinds)

    restarted = wait_for(lambda: (pid := cluster.pids().get(node)) not in (None, killed) and pid, timeout=30,
                         what=f"{node} restarted")
    assert process_alive(restarted, "nats-server")
    wait_for(lambda: all(replicated(s) for s in streams(cluster).values()), timeout=60, interval=1.0,
             what=f"{node} caught up on every stream")
