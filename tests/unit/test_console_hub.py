"""The console's live hub: one board query per change for every stream, filtered and rendered per group."""

from __future__ import annotations

import asyncio
import json

from services.gateway.console import hub as hub_module
from services.gateway.console.board import matches
from services.gateway.console.hub import Hub
from shared import subjects
from shared.contracts import Actor

SUPERVISOR = Actor(role="supervisor", id="sup-1")


class FakeNC:
    def __init__(self) -> None:
        self.subs: dict[str, object] = {}

    async def subscribe(self, subject, cb):
        self.subs[subject] = cb
        return object()


class FakeBus:
    def __init__(self) -> None:
        self.nc = FakeNC()
        self.reconnected: list = []


class Msg:
    def __init__(self, ids) -> None:
        self.data = json.dumps({"whistle_ids": ids}).encode()


def row(whistle: str, summons: str, *, building="1", tier="routine", responder="plumber-1", state="issued", **kw):
    return {"id": summons, "whistle_id": whistle, "responder_id": responder, "state": state, "tier": tier,
            "category": "leak", "location": {"building": building}, "whistle_status": "open", "warned": False,
            "breached": False, "waiting": False, **kw}


async def _drain(listener, n: int = 1) -> list:
    return [await asyncio.wait_for(listener.queue.get(), 2) for _ in range(n)]


async def test_n_alike_streams_make_one_query_per_change_and_share_one_rendering():
    queries: list[frozenset[str]] = []
    renders: list[tuple] = []
    rows = {"w1": [row("w1", "s1", building="1")], "w2": [row("w2", "s2", building="9", tier="urgent")]}

    async def fetch(ids):
        queries.append(ids)
        return [r for i in sorted(ids) for r in rows.get(i, [])]

    bus = FakeBus()
    hub = Hub(bus, fetch)

    def renderer(key):
        def render(ids, items):
            renders.append(key)
            return f"{key}:{sorted(ids)}:{[r['id'] for r in items]}"
        return render

    async with contextlib_nested(hub, 20, ("all",), {}) as everyone, \
            hub.listen(("b9",), lambda r: matches(r, {"buildings": ["9"]}, SUPERVISOR), renderer(("b9",))) as b9:
        for listener in everyone:  # same filters, same reader kind, same language: one group
            listener.render = renderer(("all",))
        await bus.nc.subs[subjects.LEDGER_BOARD_CHANGED](Msg(["w1", "w2"]))
        got = [u for listener in everyone for u in await _drain(listener)]
        (narrow,) = await _drain(b9)
    assert queries == [frozenset({"w1", "w2"})]  # one ledger query for 21 streams
    assert sorted(renders) == [("all",), ("b9",)]  # rendered once per group
    assert set(got) == {"('all',):['w1', 'w2']:['s1', 's2']"}
    assert narrow == "('b9',):['w1', 'w2']:['s2']"  # w1 is named as changed (its row leaves), not shown


def contextlib_nested(hub, n, key, asked):
    import contextlib

    @contextlib.asynccontextmanager
    async def many():
        async with contextlib.AsyncExitStack() as stack:
            yield [await stack.enter_async_context(
                hub.listen(key, lambda r: matches(r, asked, SUPERVISOR), lambda ids, items: "")) for _ in range(n)]
    return many()


async def test_a_row_projected_late_still_reaches_the_stream_when_the_ledger_announces_it():
    """The hub reacts to the ledger's commits, not the raw events: however late the projection, the
    announcement comes after it, so the row is there when fetched."""
    projected: dict[str, list[dict]] = {}

    async def fetch(ids):
        return [r for i in ids for r in projected.get(i, [])]

    bus = FakeBus()
    hub = Hub(bus, fetch)
    async with hub.listen("k", lambda r: matches(r, {}, SUPERVISOR),
                          lambda ids, items: json.dumps([r["id"] for r in items])) as listener:
        await asyncio.sleep(3)  # the ledger's consumer is behind: nothing is announced meanwhile
        assert listener.queue.empty()
        projected["w1"] = [row("w1", "s1")]  # it commits at last, then announces
        await bus.nc.subs[subjects.LEDGER_BOARD_CHANGED](Msg(["w1"]))
        assert await _drain(listener) == ['["s1"]']


async def test_a_failed_fetch_is_tried_again(monkeypatch):
    monkeypatch.setattr(hub_module, "RETRY_S", 0.05)
    calls = []

    async def fetch(ids):
        calls.append(ids)
        if len(calls) == 1:
            raise RuntimeError("ledger away")
        return [row("w1", "s1")]

    bus = FakeBus()
    hub = Hub(bus, fetch)
    async with hub.listen("k", lambda r: True, lambda ids, items: str(len(items))) as listener:
        hub.changed(["w1"])
        assert await _drain(listener) == ["1"]
    assert len(calls) == 2


async def test_changes_announced_while_a_query_runs_go_together_in_the_next_one_without_waiting():
    release = asyncio.Event()
    queries: list[frozenset[str]] = []

    async def fetch(ids):
        queries.append(ids)
        if len(queries) == 1:
            await release.wait()  # the ledger is slow to answer the first
        return [row(i, f"s-{i}") for i in sorted(ids)]

    hub = Hub(FakeBus(), fetch)
    async with hub.listen("k", lambda r: True, lambda ids, items: ",".join(r["id"] for r in items)) as listener:
        started = asyncio.get_running_loop().time()
        hub.changed(["w1"])
        await asyncio.sleep(0)
        assert queries == [frozenset({"w1"})]  # asked at once: no gathering timer
        hub.changed(["w2"])
        hub.changed(["w3"])
        release.set()
        assert await _drain(listener, 2) == ["s-w1", "s-w2,s-w3"]
        assert asyncio.get_running_loop().time() - started < 0.1
    assert queries == [frozenset({"w1"}), frozenset({"w2", "w3"})]


async def test_back_on_nats_every_stream_gets_its_whole_board_once_per_group_and_changes_go_on(monkeypatch):
    """Announcements sent while the gateway was away from NATS are lost: when its connection comes
    back, each group of alike streams gets its whole board (one query), retried while the ledger cannot
    answer, and the changes announced after it follow it, in that order."""
    monkeypatch.setattr(hub_module, "RETRY_S", 0.05)
    reloads: list[str] = []

    def whole(key):
        async def reload():
            reloads.append(key)
            if len(reloads) == 1:
                raise RuntimeError("ledger not back yet")
            return f"full:{key}"
        return reload

    async def fetch(ids):
        return [row(i, f"s-{i}") for i in sorted(ids)]

    bus = FakeBus()
    hub = Hub(bus, fetch)
    render = lambda ids, items: ",".join(r["id"] for r in items)  # noqa: E731
    async with hub.listen("a", lambda r: True, render, whole("a")) as a1, \
            hub.listen("a", lambda r: True, render, whole("a")) as a2, \
            hub.listen("b", lambda r: True, render, whole("b")) as b:
        assert bus.reconnected == [hub.reconnected]  # the hub asked the bus to be told
        for callback in bus.reconnected:
            await callback()
        hub.changed(["w9"])
        assert await _drain(a1, 2) == ["full:a", "s-w9"]
        assert await _drain(a2, 2) == ["full:a", "s-w9"]
        assert await _drain(b, 2) == ["full:b", "s-w9"]
    assert len(reloads) == 3 and reloads[0] == reloads[1] and set(reloads) == {"a", "b"}  # the failed one again


def test_the_filters_and_the_readers_visibility_match_the_ledgers_query():
    r = row("w1", "s1", building="3", tier="urgent", responder="elec-2", warned=True)
    assert matches(r, {}, SUPERVISOR)
    assert matches(r, {"buildings": ["3", "4"], "tier": "urgent", "unit": "elec-2", "category": "leak"}, SUPERVISOR)
    assert not matches(r, {"buildings": ["4"]}, SUPERVISOR)
    assert not matches(r, {"tier": "routine"}, SUPERVISOR)
    assert not matches(r, {"category": "fire"}, SUPERVISOR)
    assert not matches(r, {"unit": "elec-1"}, SUPERVISOR)
    assert matches(r, {"state": "warned"}, SUPERVISOR)
    assert matches(r, {"state": "issued"}, SUPERVISOR)
    assert not matches(r, {"state": "reported"}, SUPERVISOR)
    assert not matches({**r, "breached": True}, {"state": "warned"}, SUPERVISOR)
    assert matches({**r, "breached": True}, {"state": "breached"}, SUPERVISOR)
    assert matches({**r, "waiting": True}, {"state": "paused"}, SUPERVISOR)
    assert not matches({**r, "whistle_status": "closed"}, {}, SUPERVISOR)
    assert not matches({**r, "state": "resolved"}, {}, SUPERVISOR)
    assert matches(r, {}, Actor(role="responder", id="elec-2"))
    assert not matches(r, {}, Actor(role="responder", id="elec-1"))  # a responder sees only its own summons
