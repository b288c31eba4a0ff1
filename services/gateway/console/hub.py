"""Live updates: one set of core NATS subscriptions per gateway, fanned out to every open event stream.

The hub does not render: it tells each listener which whistles changed, and the listener asks the
ledger for its own rows (its filters, its actor), so a stream shows only what its reader may see.
Events reach the gateway as the ledger projects them, so each change is announced twice: at once
(after a short gathering window) and again a second later, when the projection has surely landed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import structlog

log = structlog.get_logger("gateway.console")

EVENT_SUBJECTS = ("whistle.>", "summons.>", "sla.>", "escalation.>")
GATHER_S = 0.25  # events of one burst go out together
RECHECK_S = 1.0  # the ledger's projection lags the event a little: look again
QUEUE = 64  # announcements a slow stream may fall behind before it is told to reload everything


class Listener:
    """One open event stream's inbox of changed whistle ids (None: reload everything)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[frozenset[str] | None] = asyncio.Queue(QUEUE)

    def tell(self, ids: frozenset[str]) -> None:
        try:
            self.queue.put_nowait(ids)
        except asyncio.QueueFull:  # too far behind: drop what is queued, ask for one full reload
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class Hub:
    def __init__(self, bus) -> None:
        self.bus = bus
        self.listeners: set[Listener] = set()
        self._subs: list = []
        self._pending: set[str] = set()
        self._flush: asyncio.Task | None = None
        self._starting = asyncio.Lock()

    async def _start(self) -> None:
        """Subscribe once, on the first stream (the bus connects in the app's lifespan)."""
        async with self._starting:
            if self._subs or self.bus.nc is None:
                return
            for subject in EVENT_SUBJECTS:
                self._subs.append(await self.bus.nc.subscribe(subject, cb=self._on_event))
            log.info("console.hub_subscribed", subjects=list(EVENT_SUBJECTS))

    async def _on_event(self, msg) -> None:
        try:
            whistle_id = json.loads(msg.data).get("whistle_id")
        except (ValueError, AttributeError):
            return
        if not whistle_id:
            return
        self._pending.add(str(whistle_id))
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._announce())

    async def _announce(self) -> None:
        await asyncio.sleep(GATHER_S)
        ids, self._pending = frozenset(self._pending), set()
        self._tell(ids)
        loop = asyncio.get_running_loop()
        loop.call_later(RECHECK_S, self._tell, ids)

    def _tell(self, ids: frozenset[str]) -> None:
        for listener in list(self.listeners):
            listener.tell(ids)

    @contextlib.asynccontextmanager
    async def listen(self):
        """A listener for as long as the stream is open."""
        await self._start()
        listener = Listener()
        self.listeners.add(listener)
        try:
            yield listener
        finally:
            self.listeners.discard(listener)
