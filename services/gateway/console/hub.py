"""Live updates: one core NATS subscription per gateway, fanned out to every open event stream.

The ledger announces, after each batch it has committed, the whistles whose board rows changed
(`ledger.board.changed`), so a row is always in place when it is fetched. On each announcement
(after a short gathering window) the hub makes one board query for those whistles, shared by every
stream: each stream's filters and its reader's visibility are applied here, the rows are rendered
once per group of streams alike (filters, reader, language) and the same text goes to each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Hashable

import structlog

from shared import subjects

log = structlog.get_logger("gateway.console")

GATHER_S = 0.1  # announcements of one burst go out together
RETRY_S = 1.0  # the ledger did not answer: ask again for the same whistles
QUEUE = 64  # updates a slow stream may fall behind before it is told to reload everything

Fetch = Callable[[frozenset[str]], Awaitable[list[dict]]]  # the board rows of these whistles (all readers)
Render = Callable[[frozenset[str], list[dict]], str]  # a stream's update: the changed whistles and its rows


class Listener:
    """One open event stream: its group, which rows it may show, how it renders them, and its inbox
    of rendered updates (None: reload everything)."""

    def __init__(self, key: Hashable, match: Callable[[dict], bool], render: Render) -> None:
        self.key = key
        self.match = match
        self.render = render
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE)

    def tell(self, update: str | None) -> None:
        try:
            self.queue.put_nowait(update)
        except asyncio.QueueFull:  # too far behind: drop what is queued, ask for one full reload
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class Hub:
    def __init__(self, bus, fetch: Fetch | None = None) -> None:
        self.bus = bus
        self.fetch = fetch  # set by the board (add_board) before the first stream
        self.listeners: set[Listener] = set()
        self._subs: list = []
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self._starting = asyncio.Lock()

    async def _start(self) -> None:
        """Subscribe once, on the first stream (the bus connects in the app's lifespan)."""
        async with self._starting:
            if self._subs or self.bus.nc is None:
                return
            self._subs.append(await self.bus.nc.subscribe(subjects.LEDGER_BOARD_CHANGED, cb=self._on_changed))
            log.info("console.hub_subscribed", subjects=[subjects.LEDGER_BOARD_CHANGED])

    async def _on_changed(self, msg) -> None:
        try:
            ids = json.loads(msg.data).get("whistle_ids") or []
        except (ValueError, AttributeError):
            return
        self.changed(str(i) for i in ids if i)

    def changed(self, ids) -> None:
        """These whistles' board rows changed: every stream gets them after the gathering window."""
        before = len(self._pending)
        self._pending.update(ids)
        if len(self._pending) == before:
            return
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        """One announcement at a time, in order: gather, fetch once, fan out."""
        while self.listeners or self._pending:
            await self._wake.wait()
            await asyncio.sleep(GATHER_S)
            self._wake.clear()
            ids, self._pending = frozenset(self._pending), set()
            if not ids:
                continue
            if not self.listeners:
                continue
            try:
                await self.announce(ids)
            except Exception as exc:  # the ledger is away a moment: the same whistles again shortly
                log.warning("console.hub_fetch_failed", error=repr(exc), whistles=len(ids))
                self._pending |= ids
                await asyncio.sleep(RETRY_S)
                self._wake.set()
            if not self.listeners:
                self._pending.clear()
                return

    async def announce(self, ids: frozenset[str]) -> None:
        """One board query for `ids`; each group of alike streams gets its rows rendered once."""
        assert self.fetch is not None
        rows = await self.fetch(ids)
        rendered: dict[Hashable, str | None] = {}
        for listener in list(self.listeners):
            if listener.key not in rendered:
                try:
                    rendered[listener.key] = listener.render(ids, [r for r in rows if listener.match(r)])
                except Exception:  # this group reloads its whole board instead; the others go on
                    log.exception("console.hub_render_failed")
                    rendered[listener.key] = None
            listener.tell(rendered[listener.key])

    @contextlib.asynccontextmanager
    async def listen(self, key: Hashable, match: Callable[[dict], bool], render: Render):
        """A listener for as long as the stream is open."""
        await self._start()
        listener = Listener(key, match, render)
        self.listeners.add(listener)
        try:
            yield listener
        finally:
            self.listeners.discard(listener)
