"""Consumers wait for room in the relay: its handed rows are held in memory until published."""

from __future__ import annotations

import asyncio

from shared.db import Queued
from shared.runtime.relay import OutboxRelay


async def test_a_consumer_waits_while_the_relay_has_more_than_its_room_then_goes_on() -> None:
    relay = OutboxRelay(pool=None, nc=None, service="t", batch=4)  # type: ignore[arg-type]
    relay.leading, relay._table_first = True, False
    relay.handoff([Queued(seq, "sla.started", b"{}", {}) for seq in range(10)])

    async def failing_send(rows) -> None:  # noqa: ARG001  (NATS down: rows stay in the table)
        return None

    relay._send = failing_send  # type: ignore[method-assign]
    waiting = asyncio.create_task(relay.room(5))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "10 rows wait, room for 5"
    await relay._publish_handed()  # 4 taken, 6 left
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await relay._publish_handed()  # 8 taken, 2 left
    await asyncio.wait_for(waiting, timeout=1)
    # a relay that does not lead holds nothing: nobody waits for it
    relay.leading = False
    relay.handoff([Queued(seq, "sla.started", b"{}", {}) for seq in range(10, 20)])
    await asyncio.wait_for(relay.room(0), timeout=1)
