"""What a replica whose relay does not lead forwards to the leader: the rows whole, and only while fresh."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from shared.db import Queued
from shared.runtime import relay as relay_module
from shared.runtime.relay import OutboxRelay, pack, unpack


def rows() -> list[Queued]:
    return [Queued(7, "whistle.closed.p03.abc", b'{"a": 1}', {"Nats-Msg-Id": "e7"}),
            Queued(9, "clock.timer.c1", b"\x00\xff binary \r\n", {"Nats-Msg-Id": "t9", "Nats-Schedule": "@at x"}),
            Queued(12, "whistle.blown.p01.def", b"", {"Nats-Msg-Id": "e12"})]


def test_rows_come_out_as_they_went_in() -> None:
    sent, got = unpack(pack(rows(), 1234.5))
    assert sent == 1234.5 and got == rows()


def test_a_message_that_is_not_a_forward_is_refused() -> None:
    with pytest.raises(ValueError):
        unpack(pack(rows(), 1.0) + b"tail")
    with pytest.raises(ValueError):
        unpack(b"\x00\x00\x00\x02{}")  # no rows, no time


def leader() -> OutboxRelay:
    relay = OutboxRelay(pool=None, nc=None, service="t")  # type: ignore[arg-type]
    relay.leading, relay._table_first, relay._notified = True, False, False
    return relay


async def test_the_leader_takes_a_fresh_forward_and_drops_a_late_one_for_the_table() -> None:
    relay = leader()
    await relay._on_forwarded(SimpleNamespace(data=pack(rows(), time.time())))
    assert list(relay._handed) == rows() and relay._notified is False
    relay._handed.clear()
    late = time.time() - relay_module.FORWARD_FRESH_S - 1  # held up while NATS was away
    await relay._on_forwarded(SimpleNamespace(data=pack(rows(), late)))
    assert not relay._handed and relay._notified is True  # read the table instead


async def test_a_forward_of_rows_the_last_table_reads_published_is_not_published_again() -> None:
    relay = leader()
    relay._read.append({7, 12})
    await relay._on_forwarded(SimpleNamespace(data=pack(rows(), time.time())))
    assert [r.seq for r in relay._handed] == [9]


async def test_a_relay_that_does_not_lead_ignores_forwards() -> None:
    relay = leader()
    relay.leading = False
    await relay._on_forwarded(SimpleNamespace(data=pack(rows(), time.time())))
    assert not relay._handed


async def test_a_forward_to_a_leader_already_holding_its_room_is_left_to_the_table() -> None:
    relay = leader()
    relay._handed.extend(Queued(100 + i, "whistle.closed.p00.x", b"{}", {}) for i in range(relay_module.FORWARD_ROOM + 1))
    await relay._on_forwarded(SimpleNamespace(data=pack(rows(), time.time())))
    assert len(relay._handed) == relay_module.FORWARD_ROOM + 1 and relay._notified is True
