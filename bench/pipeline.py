"""End-to-end pipeline benchmark: N whistles through the running system, and raw JetStream for scale.

    python bench/pipeline.py [-n 20000] [--concurrency 64] [--raw-messages 50000] [--timeout 120]

Runs from the repo root against the system `whistle up` started. It finds it through
`$WHISTLE_HOME/credentials.json` (default `.whistle/`): the base URL (`WHISTLE_BASE` overrides it)
and the dispatcher token; NATS at 127.0.0.1:$WHISTLE_NATS_PORT (default 4250; `NATS_URL` or
`--nats-url` override it); the embedded Postgres through its Unix socket under `$WHISTLE_HOME/pg`
(`DATABASE_URL` or `--database-url` override it).

What it measures, per whistle: from just before its `POST /v1/whistles` to the moment the schedule
of its summons' report clock reaches NATS (`clock.timer.<clock_id>`, seen by a core subscription
opened before the first POST). Clock ids are mapped to summons with `escalation.clocks`, summons to
whistles with the `summons.issued` events, also seen live. A whistle with several summons counts
when the last of their report clocks is armed. All times are `time.perf_counter()` in this process.

Then, on the same NATS server, the raw JetStream rate: M messages (~300 bytes) published with
pipelined `publish_async` into a throwaway file stream, then pulled (batches of 512) and acked.

The load generator shares the two cores with what it measures, so it must be light: aiohttp (httpx
took ~0.4 of a core at 450 whistles/s, a fifth of the machine, and the rate rose from ~450 to ~740
whistles/s once it was gone; bench/README.md, session 13). `client_cpu_pct` is its own CPU while it
drives the whistles and waits for their clocks, % of one core.

`--concurrency` is how many whistles are in flight (a closed loop). `--rate R` offers R whistles a second
instead (an open loop: whistle i is posted i / R seconds after the first, by whichever of the `--concurrency`
loops is free; `late_posts` counts those that left more than 0.1 s after their time). At a rate the system
keeps up with, `whistles_per_s` is the rate and what differs is latency and CPU per whistle. The default 64 does not saturate the
system: every stage's batch holds only what 64 whistles make. For the system's capacity use 256 (one
replica: 1.93–2.01 ms of CPU per whistle against 2.20–2.28 at 64; 512 gains nothing more; bench/README.md,
session 15).

`cpu_ms_per_whistle` is the CPU the system's processes (services, NATS, Postgres, from `pids.json` and
the postmaster) used from the first POST until every consumer had caught up, per whistle, and
`cpu_ms_per_whistle_by_process` the same per process; `postgres_ms_per_whistle_by_service` splits Postgres's
part by the service each backend works for (its pool's application_name). `batch_messages_mean` is how many
messages a transaction held on average, per service and consumer (its durable, or a group-committed
request's subject), over its replicas: from the services' `whistle_batch_messages` histograms.
`db_statements_per_whistle` is how many statements (each a round trip, BEGIN and COMMIT included) the
services sent to Postgres per whistle, in all and per service: from their `whistle_db_statements_total`.
On a shared two-core machine these are the steadier figures: the raw JetStream rate, and with it
`js_share_of_raw`, moved by a quarter from one run to the next in session 16 (bench/README.md).

Prints one JSON line on stdout; progress goes to stderr. Exits 2 if the system is not up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp
import asyncpg
import nats
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared.subjects import SERVICES  # each with a telemetry port, in the runner's order

EVENTS_STREAM = "EVENTS"
CLOCKS_STREAM = "CLOCKS"
RAW_STREAM = "BENCHRAW"
RAW_SUBJECT = "benchraw"
BODY = {"category": "roof_leak", "description": "bench", "location": {"building": "7"},
        "tier": "routine", "source": "online"}


class NotUp(RuntimeError):
    """The system this benchmark needs is not reachable."""


def say(*parts: object) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


def quantile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of an already sorted list."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 2)


# --- finding the system ---------------------------------------------------------------------


def locate(args: argparse.Namespace) -> dict:
    """Base URL, dispatcher token, NATS URL and Postgres DSN of the running system."""
    home = Path(os.environ.get("WHISTLE_HOME", ".whistle")).resolve()
    creds_path = home / "credentials.json"
    creds: dict = {}
    if creds_path.exists():
        creds = json.loads(creds_path.read_text())
    base = os.environ.get("WHISTLE_BASE") or creds.get("base_url")
    token = os.environ.get("WHISTLE_TOKEN") or (creds.get("dispatcher") or {}).get("token")
    if not base or not token:
        raise NotUp(f"no {creds_path}: start the system first (`whistle up`), or set WHISTLE_HOME / WHISTLE_BASE")
    nats_url = args.nats_url or os.environ.get("NATS_URL") or creds.get("nats_url") or \
        f"nats://127.0.0.1:{os.environ.get('WHISTLE_NATS_PORT', '4250')}"  # the runner's (admin) credentials
    dsn = args.database_url or os.environ.get("DATABASE_URL") or embedded_dsn(home / "pg")
    return {"home": home, "base": base.rstrip("/"), "token": token, "nats_url": nats_url, "dsn": dsn}


def embedded_dsn(pgdata: Path) -> str:
    """The embedded Postgres' Unix socket, read from its postmaster.pid (port and socket folder)."""
    socket_dir, port = pgdata, "5432"
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists():
        lines = pid_file.read_text().splitlines()
        if len(lines) >= 5:
            port = lines[3].strip() or port
            socket_dir = Path(lines[4].strip() or socket_dir)
    return f"postgresql://postgres:@/postgres?host={quote(str(socket_dir))}&port={port}"


async def _quiet(_exc: Exception) -> None:
    """nats-py's default error callback prints a traceback per failed attempt; NotUp says it once."""


def http_client(where: dict, connections: int) -> aiohttp.ClientSession:
    """HTTP/1.1 with keep-alive; the dispatcher's bearer token on every request. aiohttp, not httpx: the
    load must not take the cores it measures, and httpx cost this client ~0.4 of a core at 450 whistles/s
    (a fifth of the machine, measured with perf), aiohttp a fraction of that (bench/README.md)."""
    return aiohttp.ClientSession(
        base_url=where["base"], headers={"Authorization": f"Bearer {where['token']}"},
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=60.0, connect=10.0),
    )


async def connect_all(where: dict) -> tuple[nats.NATS, asyncpg.Connection]:
    """Check the gateway answers, then connect to NATS and Postgres; NotUp if any is missing."""
    async with http_client(where, 1) as client:
        try:
            async with client.get("/healthz", timeout=aiohttp.ClientTimeout(total=5.0)) as r:
                status, text = r.status, await r.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NotUp(f"gateway {where['base']} unreachable ({exc!r}): is `whistle up` running?") from None
        if status != 200:
            raise NotUp(f"{where['base']}/healthz answered {status}: {text[:300]}")
    try:
        nc = await asyncio.wait_for(nats.connect(
            where["nats_url"], connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=1,
            name="bench-pipeline", error_cb=_quiet,
        ), timeout=10)
    except Exception as exc:
        raise NotUp(f"NATS {where['nats_url']} unreachable ({exc!r}); set WHISTLE_NATS_PORT or NATS_URL") from None
    try:
        db = await asyncpg.connect(where["dsn"], timeout=5)
    except Exception as exc:
        await nc.close()
        raise NotUp(f"Postgres {where['dsn']} unreachable ({exc!r}); set WHISTLE_HOME or DATABASE_URL") from None
    return nc, db


# --- the pipeline run -------------------------------------------------------------------------


class Pipeline:
    """Drives the whistles and records, in this process's perf_counter, what happens to them."""

    def __init__(self, where: dict, nc: nats.NATS, db: asyncpg.Connection, n: int, concurrency: int,
                 rate: float | None = None):
        self.where, self.nc, self.db = where, nc, db
        self.n, self.concurrency, self.rate = n, concurrency, rate
        self.late = 0  # with a rate: POSTs that left more than 100 ms after their slot (all loops were busy)
        self.next_index = 0
        self.post_start: dict[str, float] = {}  # whistle id → just before its POST
        self.accept_s: list[float] = []  # POST round trips (201 only)
        self.errors = 0
        self.error_samples: list[str] = []
        self.issued_at: dict[str, float] = {}  # summons id → first summons.issued seen
        self.summons_of: dict[str, list[str]] = {}  # whistle id → its summons ids
        self.whistle_of: dict[str, str] = {}  # summons id → whistle id
        self.timer_at: dict[str, float] = {}  # clock id → first clock.timer seen
        self.report_clock: dict[str, str] = {}  # summons id → report clock id
        self.first_post: float | None = None
        self.last_accept: float = 0.0

    # live observations (core NATS subscriptions; callbacks run on this loop)

    async def on_timer(self, msg) -> None:
        t = time.perf_counter()
        try:
            clock_id = json.loads(msg.data)["clock_id"]
        except (ValueError, KeyError, TypeError):
            clock_id = msg.subject.rsplit(".", 1)[-1]
        self.timer_at.setdefault(clock_id, t)

    async def on_issued(self, msg) -> None:
        t = time.perf_counter()
        try:
            body = json.loads(msg.data)
            summons_id, whistle_id = str(body["summons_id"]), str(body["whistle_id"])
        except (ValueError, KeyError, TypeError):
            return
        if summons_id not in self.issued_at:
            self.issued_at[summons_id] = t
            self.whistle_of[summons_id] = whistle_id
            self.summons_of.setdefault(whistle_id, []).append(summons_id)

    # driving

    async def drive(self, client: aiohttp.ClientSession) -> None:
        """One of `concurrency` loops, each a request at a time over the session's keep-alive connections.
        With a rate, whistle i leaves at its slot, i / rate seconds after the first (an open loop, as long as
        a loop is free)."""
        while self.next_index < self.n:
            i = self.next_index
            self.next_index += 1
            if self.first_post is None:
                self.first_post = time.perf_counter()
            if self.rate:
                slot = self.first_post + i / self.rate
                if (wait := slot - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                elif wait < -0.1:
                    self.late += 1
            body = dict(BODY, description=f"bench whistle {i}")
            t0 = time.perf_counter()
            try:
                async with client.post("/v1/whistles", json=body) as r:
                    status, data = r.status, await r.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._error(f"{type(exc).__name__}: {exc}")
                continue
            t1 = time.perf_counter()
            if status != 201:
                self._error(f"HTTP {status}: {data[:200].decode(errors='replace')}")
                continue
            self.post_start[str(json.loads(data)["id"])] = t0
            self.accept_s.append(t1 - t0)
            self.last_accept = max(self.last_accept, t1)

    def _error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)

    async def progress(self) -> None:
        started = time.perf_counter()
        while True:
            await asyncio.sleep(2.0)
            say(f"t={time.perf_counter() - started:6.1f}s posted={self.next_index} accepted={len(self.post_start)} "
                f"errors={self.errors} summons={len(self.issued_at)} timers={len(self.timer_at)}")

    # completion

    async def map_clocks(self) -> None:
        """Report clock of every seen summons not yet mapped (one query; rows commit before their timer)."""
        todo = [s for s in self.issued_at if s not in self.report_clock]
        if not todo:
            return
        rows = await self.db.fetch(
            "SELECT c.id::text AS id, c.summons_id::text AS summons_id FROM escalation.clocks c "
            "JOIN unnest($1::text[]) AS s(id) ON c.summons_id = s.id::uuid WHERE c.kind = 'report'",
            todo,
        )
        for row in rows:
            self.report_clock[row["summons_id"]] = row["id"]

    def armed_at(self, whistle_id: str) -> float | None:
        """When the last report clock of the whistle's summons was armed; None while any is not."""
        summons = self.summons_of.get(whistle_id)
        if not summons:
            return None
        latest = 0.0
        for s in summons:
            clock = self.report_clock.get(s)
            t = self.timer_at.get(clock) if clock else None
            if t is None:
                return None
            latest = max(latest, t)
        return latest

    async def wait_all_armed(self, timeout: float) -> dict[str, float]:
        deadline = time.perf_counter() + timeout
        armed: dict[str, float] = {}
        while True:
            await self.map_clocks()
            for w in self.post_start:
                if w not in armed and (t := self.armed_at(w)) is not None:
                    armed[w] = t
            if len(armed) == len(self.post_start) or time.perf_counter() > deadline:
                return armed
            await asyncio.sleep(0.25)

    async def run(self, timeout: float) -> dict:
        subs = [await self.nc.subscribe("clock.timer.>", cb=self.on_timer, pending_msgs_limit=-1, pending_bytes_limit=-1),
                await self.nc.subscribe("summons.issued.>", cb=self.on_issued, pending_msgs_limit=-1, pending_bytes_limit=-1)]
        await self.nc.flush()
        ticker = asyncio.create_task(self.progress())
        try:
            async with http_client(self.where, self.concurrency) as client:
                await asyncio.gather(*(self.drive(client) for _ in range(self.concurrency)))
            say(f"all {self.n} posted ({len(self.post_start)} accepted, {self.errors} errors); waiting for clocks")
            armed = await self.wait_all_armed(timeout)
        finally:
            ticker.cancel()
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        return armed

    def results(self, armed: dict[str, float]) -> dict:
        latencies = sorted(armed[w] - self.post_start[w] for w in armed)
        to_summons = sorted(
            min(self.issued_at[s] for s in self.summons_of[w]) - self.post_start[w]
            for w in self.post_start if self.summons_of.get(w)
        )
        accept = sorted(self.accept_s)
        first = self.first_post or 0.0
        last = max(armed.values()) if armed else None
        duration = (last - first) if last is not None else None
        accept_duration = self.last_accept - first if self.accept_s else None
        offered = {"offered_per_s": self.rate, "late_posts": self.late} if self.rate else {}
        return {
            **offered,
            "whistles_per_s": round(len(armed) / duration, 1) if duration else None,
            "p50_ms": ms(quantile(latencies, 0.50)),
            "p90_ms": ms(quantile(latencies, 0.90)),
            "p99_ms": ms(quantile(latencies, 0.99)),
            "max_ms": ms(latencies[-1] if latencies else None),
            "duration_s": round(duration, 3) if duration else None,
            "completed": len(armed),
            "missing": len(self.post_start) - len(armed),
            "errors": self.errors,
            "accepted_per_s": round(len(self.accept_s) / accept_duration, 1) if accept_duration else None,
            "accept_p50_ms": ms(quantile(accept, 0.50)),
            "accept_p99_ms": ms(quantile(accept, 0.99)),
            "summons_p50_ms": ms(quantile(to_summons, 0.50)),
            "summons_p99_ms": ms(quantile(to_summons, 0.99)),
        }


async def all_consumers(js, stream: str) -> list:
    """Every consumer of the stream (the server lists 256 at a time; one durable per partition each)."""
    out: list = []
    while True:
        page = await js.consumers_info(stream, offset=len(out))
        out += page
        if len(page) < 256:
            return out


async def wait_quiet(js, limit_s: float) -> bool:
    """True once every consumer of EVENTS has nothing pending or unacked (checked twice)."""
    deadline = time.perf_counter() + limit_s
    calm = 0
    last_say = 0.0
    while time.perf_counter() < deadline:
        infos = await all_consumers(js, EVENTS_STREAM)
        behind = {c.name: (c.num_pending or 0) + (c.num_ack_pending or 0) for c in infos}
        calm = calm + 1 if not any(behind.values()) else 0
        if calm >= 2:
            return True
        if time.perf_counter() - last_say >= 5.0:
            say("quiet: waiting for", {k: v for k, v in behind.items() if v})
            last_say = time.perf_counter()
        await asyncio.sleep(0.5)
    return False


async def last_seq(js, stream: str) -> int | None:
    try:
        return (await js.stream_info(stream)).state.last_seq
    except NotFoundError:
        return None


async def settled_seq(js, stream: str, quiet: float = 1.0, limit: float = 15.0) -> int | None:
    """The stream's last sequence once it has stopped moving for `quiet` seconds (at most `limit`)."""
    deadline = time.perf_counter() + limit
    seq = await last_seq(js, stream)
    while time.perf_counter() < deadline:
        await asyncio.sleep(quiet)
        now = await last_seq(js, stream)
        if now == seq:
            break
        seq = now
    return seq


# --- raw JetStream ------------------------------------------------------------------------------


async def raw_jetstream(nc: nats.NATS, messages: int) -> dict:
    """Publish `messages` (~300 B) pipelined into a throwaway file stream, then pull + ack them all."""
    js = nc.jetstream(publish_async_max_pending=8_000)
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(RAW_STREAM)
    await js.add_stream(StreamConfig(name=RAW_STREAM, subjects=[f"{RAW_SUBJECT}.>"], storage=StorageType.FILE))
    payload = (b"0123456789abcdef" * 19)[:300]
    subject = f"{RAW_SUBJECT}.msg"
    chunk = 2_000
    try:
        t0 = time.perf_counter()
        for start in range(0, messages, chunk):
            futures = [await js.publish_async(subject, payload) for _ in range(min(chunk, messages - start))]
            await asyncio.gather(*futures)
        publish_s = time.perf_counter() - t0

        psub = await js.pull_subscribe(
            subject, durable="benchraw", stream=RAW_STREAM,
            config=ConsumerConfig(durable_name="benchraw", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=-1),
        )
        got = 0
        t1 = time.perf_counter()
        while got < messages:
            try:
                batch = await psub.fetch(batch=512, timeout=5.0)
            except NatsTimeoutError:
                raise RuntimeError(f"raw consume stalled at {got}/{messages}") from None
            for m in batch:
                await m.ack()
            got += len(batch)
        await nc.flush()
        consume_s = time.perf_counter() - t1
        await psub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(RAW_STREAM)
    return {
        "raw_js_msgs_per_s": round(messages / (publish_s + consume_s), 1),
        "raw_js_publish_per_s": round(messages / publish_s, 1),
        "raw_js_consume_per_s": round(messages / consume_s, 1),
        "raw_js_messages": messages,
    }


# --- main -----------------------------------------------------------------------------------------


async def shape(js, where: dict) -> dict:
    """Processes per service (from pids.json) and partitions of the events (the stream's transform)."""
    replicas = None
    with contextlib.suppress(OSError, ValueError):
        names = json.loads((where["home"] / "pids.json").read_text())
        replicas = sum(1 for name in names if name == "routing" or name.startswith("routing-"))
    transform = (await js.stream_info(EVENTS_STREAM)).config.subject_transform
    found = re.search(r"partition\((\d+)", transform.dest) if transform else None
    return {"replicas": replicas, "partitions": int(found[1]) if found else None}


_BATCH = re.compile(r'^whistle_batch_messages_(sum|count)\{consumer="([^"]+)",service="([^"]+)"\} ([0-9.e+]+)$', re.M)
_STATEMENTS = re.compile(r'^whistle_db_statements_total\{service="([^"]+)"\} ([0-9.e+]+)$', re.M)


async def scrape(where: dict) -> list[str]:
    """Each service process's /metrics (the runner's telemetry ports: WHISTLE_TELEMETRY_BASE_PORT + the
    service's place + one block of ports per replica); a process that does not answer is left out."""
    base = int(os.environ.get("WHISTLE_TELEMETRY_BASE_PORT", "9101"))
    texts: list[str] = []
    with contextlib.suppress(OSError, ValueError):
        names = json.loads((where["home"] / "pids.json").read_text())
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for name in names:
                service, _, k = name.partition("-")
                if service not in SERVICES:
                    continue
                port = base + SERVICES.index(service) + (int(k or 1) - 1) * len(SERVICES)
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                        texts.append(await r.text())
    return texts


def batch_totals(texts: list[str]) -> dict[str, list[float]]:
    """Per service and consumer (a durable, or a group-committed request's subject), over its replicas: the
    messages its batches held and how many batches."""
    totals: dict[str, list[float]] = {}
    for text in texts:
        for kind, consumer, who, value in _BATCH.findall(text):
            messages_and_batches = totals.setdefault(f"{who} {consumer}", [0.0, 0.0])
            messages_and_batches[1 if kind == "count" else 0] += float(value)
    return totals


def batch_means(before: dict[str, list[float]], after: dict[str, list[float]]) -> dict:
    """How many messages a batch held on average during the run, per service and consumer."""
    means = {}
    for key, (messages, batches) in after.items():
        was = before.get(key, [0.0, 0.0])
        if batches > was[1]:
            means[key] = round((messages - was[0]) / (batches - was[1]), 1)
    return {"batch_messages_mean": dict(sorted(means.items()))} if means else {}


def statement_totals(texts: list[str]) -> dict[str, float]:
    """Statements each service sent to Postgres, over its replicas."""
    totals: dict[str, float] = {}
    for text in texts:
        for service, value in _STATEMENTS.findall(text):
            totals[service] = totals.get(service, 0.0) + float(value)
    return totals


def statements_per_whistle(before: dict[str, float], after: dict[str, float], whistles: int) -> dict:
    """Postgres statements (round trips) per whistle during the run, per service and in all."""
    each = {service: (n - before.get(service, 0.0)) / whistles for service, n in after.items()}
    each = {service: round(v, 3) for service, v in sorted(each.items(), key=lambda kv: -kv[1]) if v > 0}
    return {"db_statements_per_whistle": round(sum(each.values()), 3),
            "db_statements_per_whistle_by_service": each} if each else {}


def pids(where: dict) -> dict[str, int]:
    """Process ids `whistle up` wrote (services and nats), plus the embedded postmaster."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError):
        out.update({k: int(v) for k, v in json.loads((where["home"] / "pids.json").read_text()).items()})
    with contextlib.suppress(OSError, ValueError, IndexError):
        out["postgres"] = int((where["home"] / "pg" / "postmaster.pid").read_text().splitlines()[0])
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(procs: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process; postgres sums the postmaster, its live backends and the
    reaped ones (cutime); `bench` is this process."""
    out: dict[str, float] = {}
    for name, pid in procs.items():
        st = _stat(pid)
        if st is None:
            continue
        total = int(st[11]) + int(st[12])
        if name == "postgres":
            total += int(st[13]) + int(st[14])
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    child = _stat(int(entry.name))
                    if child and child[1] == str(pid):
                        total += int(child[11]) + int(child[12])
        out[name] = total / _TICK
    t = os.times()
    out["bench"] = t.user + t.system
    with contextlib.suppress(OSError, ValueError):
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        out["machine"] = (sum(ticks) - ticks[3] - ticks[4]) / _TICK  # all but idle and iowait
    return out


async def backend_cpu(db: asyncpg.Connection, postmaster: int | None) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each Postgres backend of the postmaster, with who it works for: the
    service its pool names (`whistle-<service>`), else its kind (walwriter, checkpointer, …)."""
    if postmaster is None:
        return {}
    rows = await db.fetch("SELECT pid, coalesce(nullif(application_name, ''), backend_type) AS who"
                          " FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
    out: dict[int, tuple[str, float]] = {}
    for r in rows:
        st = _stat(r["pid"])
        if st is not None and st[1] == str(postmaster):  # a backend of this host's postmaster
            out[r["pid"]] = (r["who"].removeprefix("whistle-"), (int(st[11]) + int(st[12])) / _TICK)
    return out


def postgres_per_whistle(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                         whistles: int) -> dict:
    """Postgres's CPU per whistle by the service its backends worked for (a backend that started during the
    run counts from zero; one that ended during it is missing here, though counted in `postgres`)."""
    each: dict[str, float] = {}
    for pid, (who, seconds) in after.items():
        each[who] = each.get(who, 0.0) + seconds - (before[pid][1] if pid in before else 0.0)
    each = {who: round(s * 1e3 / whistles, 3) for who, s in each.items() if s > 0}
    return {"postgres_ms_per_whistle_by_service": dict(sorted(each.items(), key=lambda kv: -kv[1]))} if each else {}


def cpu_per_whistle(before: dict[str, float], after: dict[str, float], whistles: int) -> dict:
    """The system's CPU (its services, NATS and Postgres: not this process, not the rest of the machine)
    from the first POST until every consumer had caught up, in ms per whistle: the steadier figure on a shared
    machine, where the raw JetStream rate and so the share of it move by a quarter between runs."""
    each = {k: round((after[k] - before[k]) * 1e3 / whistles, 3) for k in after
            if k in before and k not in ("bench", "machine")}
    return {"cpu_ms_per_whistle": round(sum(each.values()), 2),
            "cpu_ms_per_whistle_by_process": dict(sorted(each.items(), key=lambda kv: -kv[1]))}


async def main(args: argparse.Namespace) -> dict:
    where = locate(args)
    nc, db = await connect_all(where)
    say(f"system at {where['base']}, NATS {where['nats_url']}; {args.whistles} whistles, concurrency {args.concurrency}")
    try:
        js = nc.jetstream()
        events_before = await last_seq(js, EVENTS_STREAM)
        clocks_before = await last_seq(js, CLOCKS_STREAM)
        if events_before is None:
            raise NotUp(f"no {EVENTS_STREAM} stream on {where['nats_url']}: is that the system's NATS?")
        pipeline = Pipeline(where, nc, db, args.whistles, args.concurrency, args.rate)
        system = pids(where)
        system_cpu0 = cpu_seconds(system)
        backends0 = await backend_cpu(db, system.get("postgres"))
        metrics0 = await scrape(where)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        armed = await pipeline.run(args.timeout)
        out = {"n": args.whistles, "concurrency": args.concurrency}
        out.update(pipeline.results(armed))
        # the load generator shares the machine with what it measures: its own CPU, % of one core
        out["client_cpu_pct"] = round(100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0), 1)
        say(f"{out['completed']} whistles armed in {out['duration_s']} s; settling the streams")
        events_after = await settled_seq(js, EVENTS_STREAM)
        clocks_after = await last_seq(js, CLOCKS_STREAM)
        accepted = max(1, len(pipeline.post_start))
        caught_up = await wait_quiet(js, 60.0)  # the ledger and the notifier may still be at it
        out.update(cpu_per_whistle(system_cpu0, cpu_seconds(system), accepted))
        out.update(postgres_per_whistle(backends0, await backend_cpu(db, system.get("postgres")), accepted))
        metrics = await scrape(where)
        out.update(batch_means(batch_totals(metrics0), batch_totals(metrics)))
        out.update(statements_per_whistle(statement_totals(metrics0), statement_totals(metrics), accepted))
        if not caught_up:
            out["cpu_window_caught_up"] = False  # some of the work is not counted
        out["events_per_whistle"] = round((events_after - events_before) / accepted, 2)
        if clocks_before is not None and clocks_after is not None:
            out["clock_msgs_per_whistle"] = round((clocks_after - clocks_before) / accepted, 2)
        if pipeline.error_samples:
            out["error_samples"] = pipeline.error_samples
        out.update(await shape(js, where))
        out["js_msgs_per_whistle"] = round(out["events_per_whistle"] + out.get("clock_msgs_per_whistle", 0), 2)
        if args.raw_messages > 0:
            say(f"raw JetStream: {args.raw_messages} messages into {RAW_STREAM}")
            out.update(await raw_jetstream(nc, args.raw_messages))
            if out.get("whistles_per_s"):  # the system's JetStream traffic as a share of the raw rate
                out["js_share_of_raw"] = round(
                    out["whistles_per_s"] * out["js_msgs_per_whistle"] / out["raw_js_msgs_per_s"], 3)
        return out
    finally:
        await db.close()
        with contextlib.suppress(Exception):
            await nc.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--whistles", type=int, default=20_000, help="whistles to drive (default 20000)")
    p.add_argument("--concurrency", type=int, default=64, help="POSTs in flight, one keep-alive connection each (64)")
    p.add_argument("--rate", type=float, default=None,
                   help="offered load, whistles/s (an open loop; default: none, a closed loop of --concurrency)")
    p.add_argument("--raw-messages", type=int, default=50_000, help="raw JetStream messages (default 50000; 0 skips)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds after the last POST to wait for report clocks (default 120)")
    p.add_argument("--nats-url", default=None, help="NATS URL (default NATS_URL or nats://127.0.0.1:$WHISTLE_NATS_PORT)")
    p.add_argument("--database-url", default=None, help="Postgres DSN (default DATABASE_URL or the embedded one)")
    args = p.parse_args(argv)
    if args.whistles < 1 or args.concurrency < 1 or (args.rate is not None and args.rate <= 0):
        p.error("--whistles, --concurrency and --rate must be positive")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    try:
        result = asyncio.run(main(arguments))
    except NotUp as exc:
        print(f"bench/pipeline.py: the system is not up: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    print(json.dumps(result), flush=True)
    sys.exit(0 if result.get("completed") else 1)
