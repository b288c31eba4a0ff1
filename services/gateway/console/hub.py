"""Live updates: one core NATS subscription per gateway, fanned out to every open event stream.

The ledger announces, after each batch it has committed, the whistles whose board rows changed
(`ledger.board.changed`), so a row is always in place when it is fetched. On an announcement the
hub makes at once one board query for those whistles, shared by every stream (what is announced
while a query runs goes into the next one: no timer, and no more queries than the ledger can
answer); each stream's filters and its reader's visibility are applied here, the rows are rendered
once per group of streams alike (filters, reader, language) and the same bytes go to each of them.

Announcements are core NATS, fire and forget: while the gateway is away from NATS (a restart, a
network cut) they are lost. When its connection comes back, the hub gives every stream its whole
board again (one query per group), then goes on with the changes; the streams stay open throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Hashable

import structlog

from shared import subjects

log = structlog.get_logger("gateway.console")

RETRY_S = 1.0  # the ledger did not answer: ask again for the same whistles (or the whole boards)
QUEUE = 64  # updates a slow stream may fall behind before it is told to reload everything

Fetch = Callable[[frozenset[str]], Awaitable[list[dict]]]  # the board rows of these whistles (all readers)
Render = Callable[[frozenset[str], list[dict]], bytes]  # a stream's update: the changed whistles and its rows
Reload = Callable[[], Awaitable[bytes]]  # a stream's whole board, rendered


class Listener:
    """One open event stream: its group, which rows it may show, how it renders them and its whole
    board, and its inbox of rendered updates (None: reload everything)."""

    def __init__(self, key: Hashable, match: Callable[[dict], bool], render: Render,
                 reload: Reload | None = None) -> None:
        self.key = key
        self.match = match
        self.render = render
        self.reload = reload
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)

    def tell(self, update: bytes | None) -> None:
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
        self._resync = False  # every stream needs its whole board (announcements may have been lost)
        self._worker: asyncio.Task | None = None
        self._starting = asyncio.Lock()

    async def _start(self) -> None:
        """Subscribe once, on the first stream (the bus connects in the app's lifespan)."""
        async with self._starting:
            if self._subs or self.bus.nc is None:
                return
            self._subs.append(await self.bus.nc.subscribe(subjects.LEDGER_BOARD_CHANGED, cb=self._on_changed))
            self.bus.reconnected.append(self.reconnected)
            log.info("console.hub_subscribed", subjects=[subjects.LEDGER_BOARD_CHANGED])

    async def _on_changed(self, msg) -> None:
        try:
            ids = json.loads(msg.data).get("whistle_ids") or []
        except (ValueError, AttributeError):
            return
        self.changed(str(i) for i in ids if i)

    def changed(self, ids) -> None:
        """These whistles' board rows changed: every stream gets them as soon as the hub is free."""
        before = len(self._pending)
        self._pending.update(ids)
        if len(self._pending) != before:
            self._kick()

    async def reconnected(self) -> None:
        """Back on NATS (the subscription renewed): what was announced meanwhile is lost, so every
        stream gets its whole board."""
        log.info("console.hub_resync", streams=len(self.listeners))
        self._resync = True
        self._kick()

    def _kick(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        """One query at a time, in order (a whole board before the changes after it): fetch, fan out,
        again while anything is pending; then the task ends."""
        while self.listeners and (self._resync or self._pending):
            try:
                if self._resync:
                    self._resync = False
                    await self.resync()
                    continue
                ids, self._pending = frozenset(self._pending), set()
                try:
                    await self.announce(ids)
                except Exception:
                    self._pending |= ids
                    raise
            except Exception as exc:  # the ledger is away a moment: the same again shortly
                log.warning("console.hub_fetch_failed", error=repr(exc), whistles=len(self._pending),
                            resync=self._resync)
                await asyncio.sleep(RETRY_S)
        if not self.listeners:
            self._pending.clear()
            self._resync = False

    async def resync(self) -> None:
        """Every stream's whole board, queried and rendered once per group; a stream whose group cannot
        reload this way reloads on its own."""
        groups: dict[Hashable, list[Listener]] = {}
        for listener in list(self.listeners):
            groups.setdefault(listener.key, []).append(listener)
        for key, members in groups.items():
            reload = next((m.reload for m in members if m.reload is not None), None)
            try:
                update = await reload() if reload is not None else None
            except Exception:
                self._resync = True  # this group and the rest again after a pause (a whole board is idempotent)
                raise
            for listener in members:
                listener.tell(update)

    async def announce(self, ids: frozenset[str]) -> None:
        """One board query for `ids`; each group of alike streams gets its rows rendered once."""
        assert self.fetch is not None
        rows = await self.fetch(ids)
        rendered: dict[Hashable, bytes | None] = {}
        for listener in list(self.listeners):
            if listener.key not in rendered:
                try:
                    rendered[listener.key] = listener.render(ids, [r for r in rows if listener.match(r)])
                except Exception:  # this group reloads its whole board instead; the others go on
                    log.exception("console.hub_render_failed")
                    rendered[listener.key] = None
            listener.tell(rendered[listener.key])

    @contextlib.asynccontextmanager
    async def listen(self, key: Hashable, match: Callable[[dict], bool], render: Render,
                     reload: Reload | None = None):
        """A listener for as long as the stream is open."""
        await self._start()
        listener = Listener(key, match, render, reload)
        self.listeners.add(listener)
        try:
            yield listener
        finally:
            self.listeners.discard(listener)
