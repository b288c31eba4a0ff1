"""What every service runs on: settings, pool, migrations, requests, consumers, relay, telemetry.

A service's `app.py` builds a `ServiceRuntime`, registers its handlers on it and calls `run()`.
Handlers stay thin: they get a connection inside an open transaction and return the messages
to write to the outbox; this module owns acks, the inbox, dead letters and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import nats
import nats.errors
import structlog
from faststream.nats import JStream, NatsBroker
from nats.aio.msg import Msg

from shared import heap, priority, subjects, telemetry
from shared.auth import SecretError
from shared.contracts import Actor, Event
from shared.db import (
    SHARED_MIGRATIONS,
    OutboxMessage,
    Queued,
    create_pool,
    migrate,
    write_outbox,
)
from shared.leases import LeaseKeeper
from shared.partitioned import PartitionedPull
from shared.pull import PullBatches
from shared.runtime.consumers import Consuming, _Consumer, _Held
from shared.runtime.faults import STALL_S
from shared.runtime.relay import OutboxRelay
from shared.runtime.requests import Answering
from shared.settings import ServiceSettings, nats_servers, replica_name
from shared.streams import ensure_streams, wait_for_streams

T = TypeVar("T")
Effects = list[Event | OutboxMessage]

class ServiceRuntime(Consuming, Answering):
    """The composition of one service process."""

    def __init__(self, name: str, settings: ServiceSettings, migrations: Path | None = None):
        self.name = name
        self.settings = settings
        self.migrations = [SHARED_MIGRATIONS] + ([migrations] if migrations else [])
        # what the service consumes, answers and emits, for its AsyncAPI document (`whistle docs`); never started:
        # the runtime speaks to NATS through nats-py
        self.spec_broker = NatsBroker(nats_servers(settings.nats_url))
        self._consumers: list[_Consumer] = []
        self.emitted: list[str] = []  # the event subjects it documents: what it may publish (shared/nats_auth.py)
        self.served: list[str] = []  # the request subjects it answers: what it may subscribe to
        self.together = []
        self.answering = []
        self._request_subs = []
        self._answers = set()
        self._health_sub = None
        self._stopping = False
        self.pool: asyncpg.Pool | None = None
        self.relay: OutboxRelay | None = None
        self.log = structlog.get_logger(name)
        self.started = False
        self._stalls: dict[str, tuple[str, float, bool]] = {}  # component -> (why, since, logged)
        self._nc: nats.NATS | None = None
        self._tasks: list[asyncio.Task] = []
        self._pulls: list[PullBatches | PartitionedPull] = []
        self._pull_of: dict[str, PartitionedPull] = {}  # each partitioned consumer's, by its durable
        self.replica = replica_name(settings.replica)
        # signed commands: the signers' keys to verify each request with; the own key of a service that asks
        # another one as the system (`signs`). Missing ones stop `run` (`require_keys`), never a build
        self.signs = False
        self.verifier = settings.command_verifier() if settings.command_verify_keys else None
        self.signer = settings.command_signer() if settings.command_key else None
        self.keeper: LeaseKeeper | None = None  # the partitions this replica holds, with partitioned consumers
        self._held: list[_Held] = []
        self._startup: list[Callable[[ServiceRuntime], Awaitable[None]]] = []
        self._periodic: list[tuple[float, Callable[[ServiceRuntime], Awaitable[None]]]] = []
        self.every(15.0, self._consumer_lag)
        self.every(1.0, self._check_dependencies)
        self.every(3600.0, self._forget_old_replies)

    # --- registration ------------------------------------------------------

    def documents(self, *event_types: type[Event]) -> None:
        """Declare, for the AsyncAPI document, the events this service emits (the relay sends them)."""
        for cls in event_types:
            self.emitted.append(cls.SUBJECT)
            self.spec_broker.publisher(
                cls.SUBJECT, stream=JStream(subjects.EVENTS_STREAM, declare=False), schema=cls,
                title=f"{self.name}:{cls.SUBJECT}", description=(cls.__doc__ or "").strip(),
            )

    def on_startup(self, fn: Callable[[ServiceRuntime], Awaitable[None]]) -> None:
        self._startup.append(fn)

    def every(self, seconds: float, fn: Callable[[ServiceRuntime], Awaitable[None]]) -> None:
        """Run `fn` periodically while the service runs (gauges, housekeeping); errors are logged."""
        self._periodic.append((seconds, fn))

    async def _periodically(self, seconds: float, fn: Callable[[ServiceRuntime], Awaitable[None]]) -> None:
        while not self._stopping:
            try:
                await fn(self)
            except Exception as exc:
                self.log.warning("periodic.failed", task=getattr(fn, "__name__", "?"), error=repr(exc))
            for _ in range(int(seconds * 10)):
                if self._stopping:
                    return
                await asyncio.sleep(0.1)

    # --- running -----------------------------------------------------------

    def require_keys(self) -> None:
        """SecretError unless the keys this process needs are there: the signers' keys for this service, and
        its own secret if it sends commands to other services."""
        self.verifier = self.settings.command_verifier()
        if self.signs:
            self.signer = self.settings.command_signer()

    def signed(self, subject: str, actor: Actor, payload: Any) -> bytes:
        """A command to another service, signed with this process's key."""
        if self.signer is None:
            self.signer = self.settings.command_signer()
        return self.signer.body(subject, actor, payload)

    async def run(self) -> None:
        """Start everything, serve until SIGTERM / SIGINT, then stop cleanly."""
        self.require_keys()
        telemetry.configure_logging(self.name, self.settings.log_json)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = await telemetry.serve_telemetry(self.settings.telemetry_port, self.health)
        await self.start()
        self.log.info("service.ready", telemetry_port=self.settings.telemetry_port)
        await stop.wait()
        self.log.info("service.stopping")
        await self.stop()
        if server:
            server.close()

    async def start(self) -> None:
        priority.lower(0, self.settings.nice)
        self.pool = await create_pool(self.settings.database_url, self.name, nice=self.settings.nice)
        applied = await migrate(self.pool, self.migrations)
        if applied:
            self.log.info("migrations.applied", files=applied)
        self._nc = await nats.connect(nats_servers(self.settings.nats_url), name=f"{self.name}-relay", max_reconnect_attempts=-1)
        js = self._nc.jetstream(publish_async_max_pending=10_000)
        if self.settings.declare_streams:
            await ensure_streams(js, self.settings.stream_replicas, self.settings.partitions,
                                 self.settings.reporter_retention_days)
        else:
            await wait_for_streams(js)
        self.relay = OutboxRelay(self.pool, self._nc, self.name)
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-relay"))
        for fn in self._startup:
            await fn(self)
        for requests in self.together:
            await requests.start()
        await self._start_consumers(js)
        for seconds, fn in self._periodic:
            self._tasks.append(asyncio.create_task(self._periodically(seconds, fn)))
        await self._start_answering(self._nc)
        # every replica answers (no queue group): whoever asks takes the first answer
        self._health_sub = await self._nc.subscribe(f"{subjects.HEALTH}.{self.name}", cb=self._health)
        heap.settle()
        self.started = True

    async def stop(self) -> None:
        self.started = False
        self._stopping = True
        for requests in self.together:
            with contextlib.suppress(Exception):
                await requests.stop()
        if self._health_sub is not None:
            with contextlib.suppress(Exception):
                await self._health_sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self._stop_answering()
        if self.relay:
            self.relay.stop()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, timeout=5)
        await self._stop_consumers()
        if self._nc:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        if self.pool:
            await self.pool.close()

    @property
    def nc(self) -> nats.NATS:
        assert self._nc is not None
        return self._nc

    # --- internals ---------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Started, and its pool, NATS connection, relay and consumers all working (an outbox that
        lags under load is watched and alerted on, but the service still works)."""
        return self.started and not (self._stalls.keys() - {"outbox"})

    def health(self) -> dict:
        """Whether the service is ready and, if not, what is down and since when."""
        now = time.monotonic()
        return {"service": self.name, "ready": self.ready,
                "problems": {c: {"reason": why, "for_s": round(now - since, 1)}
                             for c, (why, since, _) in self._stalls.items()}}

    def stalled(self, component: str, why: str) -> None:
        """A dependency is down (the service is not ready until `recovered`); logged past STALL_S."""
        _, since, logged = self._stalls.get(component, (why, time.monotonic(), False))
        self._stalls[component] = (why, since, logged)

    def recovered(self, component: str) -> None:
        gone = self._stalls.pop(component, None)
        if gone is not None and gone[2]:
            self.log.warning("service.recovered", component=component, down_s=round(time.monotonic() - gone[1], 1))

    async def _check_dependencies(self, _: ServiceRuntime) -> None:
        """Probe the pool, NATS and the relay; log a stall past STALL_S once; set the gauges."""
        try:
            assert self.pool is not None
            async with self.pool.acquire(timeout=2.0) as conn:
                oldest, rows = await conn.fetchrow(
                    "SELECT (SELECT extract(epoch FROM now() - created_at) FROM outbox ORDER BY seq LIMIT 1),"
                    " (SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT 100000) o)", timeout=2.0)
            self.recovered("postgres")
            telemetry.OUTBOX_LAG.labels(self.name).set(float(oldest or 0.0))
            telemetry.OUTBOX_ROWS.labels(self.name).set(rows)
            if oldest is not None and oldest > STALL_S:
                self.stalled("outbox", f"the oldest unpublished event waits {oldest:.0f} s")
            else:
                self.recovered("outbox")
        except Exception as exc:
            self.stalled("postgres", f"database unreachable: {exc!r}"[:300])
        if self._nc is not None and not self._nc.is_connected:
            self.stalled("nats", "NATS disconnected, reconnecting")
        else:
            self.recovered("nats")
        if self.relay is not None and self.relay.problem:
            self.stalled("relay", self.relay.problem)
        else:
            self.recovered("relay")
        now = time.monotonic()
        down: dict[str, float] = {}
        for component, (why, since, logged) in list(self._stalls.items()):
            kind = component.split(":", 1)[0]
            down[kind] = max(down.get(kind, 0.0), now - since)
            if not logged and now - since > STALL_S:
                self.log.warning("service.stalled", component=component, reason=why, for_s=round(now - since, 1))
                self._stalls[component] = (why, since, True)
        for kind in telemetry.STALL_COMPONENTS:
            telemetry.STALLED.labels(self.name, kind).set(down.get(kind, 0.0))

    async def _health(self, msg: Msg) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps(self.health()).encode())


    async def emit(self, conn: asyncpg.Connection, effects: Effects) -> list[Queued]:
        """Queue the effects in the outbox; the rows to hand the relay once committed."""
        queued = await write_outbox(conn, effects)
        # an event's subject is its type; a raw message (a clock's timer) is labelled by its
        # subject's first two tokens, never by the clock id in the rest. Counted per label, not per
        # message (labels() is a lookup under a lock), and OutboxMessage is tested first
        # (isinstance against a pydantic model goes through ABCMeta.__instancecheck__).
        emitted = Counter(".".join(e.subject.split(".")[:2]) if isinstance(e, OutboxMessage) else e.subject
                          for e in effects)
        for label, n in emitted.items():
            telemetry.EVENTS_EMITTED.labels(self.name, label).inc(n)
        return queued



def main(build: Callable[[], ServiceRuntime]) -> None:
    """Run a service process on uvloop where it is installed (measured: less CPU per message and
    per Postgres round trip than the default loop), else on asyncio's own loop."""
    runtime = build()
    try:
        runtime.require_keys()
    except SecretError as exc:
        print(f"{runtime.name} refuses to start / 拒绝启动: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    try:
        import uvloop
    except ImportError:  # platforms without uvloop
        asyncio.run(runtime.run())
    else:
        uvloop.run(runtime.run())
