"""Console benchmark: the SLA board's first page with 5,000 open summons, then 200 live SSE streams
on one gateway while whistles are offered at 200/s.

    .venv/bin/python bench/console.py [--open 5000] [--streams 200] [--rate 200] [--seconds 30]

Like chaos.py and notify.py it starts its own system (`whistle up --no-demo`, free ports, a fresh
state directory: `--home`, new or empty, default a new temporary one, kept for its logs), then sets
the console's demo passwords as `whistle up` does (`set_demo_passwords`) and signs in through
`/console/signin` (the sign-in form's CSRF token, then the session cookie) as the dispatcher and the
supervisor. Then:

 1. `--open` whistles through `POST /v1/whistles` with pipeline.py's driver (routine roof leaks at
    building 7: one open summons each, d-housing), until every report clock is armed and every EVENTS
    consumer is idle (the ledger has projected them);
 2. the board: `--board-requests` sequential `GET /console/board` (no filters: the first page, 100
    rows), as the dispatcher, timed to the last byte of the answer: `board_p50_ms` / `board_p95_ms`;
 3. live: `--streams` `GET /console/board/stream` (half as the dispatcher, half as the supervisor, no
    filters: every stream must show every new summons), each on its own connection, all open before
    the load starts; then chaos.py's open-loop load (`POST /v1/whistles`, same body, retried with its
    Idempotency-Key) at `--rate` for `--seconds`. A stream learns a whistle reached it when a
    `board` event arrives whose rows (`<tr id="row-{summons id}" data-whistle="{whistle id}">`, what
    htmx swaps into the board) hold the whistle's summons: `time.time()` when the event is read, minus
    the JetStream timestamp of that summons' `summons.issued` (read back from the EVENTS stream after
    the window). After the load it waits (`--drain-s`) until every stream has every new summons.

Prints one JSON line: `board_*`; `stream_p50_ms` / `stream_p99_ms` / `stream_max_ms` per summons, to
the last stream that showed it (the goal: p99 <= 1 s), `pair_p50_ms` / `pair_p99_ms` per (summons,
stream); `streams_dropped` (ended or failed before the bench closed them), `summons_missing_somewhere`,
`pairs_missing`; `gateway_rss_mb` (before the streams, peak during the window, after), CPU per process
in the window (`cpu_util`, 1.0 = one core), the load average, and diagnostics (events and bytes per
stream, full reloads the hub asked for). Exit 0 when every goal is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from chaos import Load  # noqa: E402  (open loop at a fixed rate, retried with the Idempotency-Key)
from notify import System, stored_times  # noqa: E402  (puts the repo on the path)
from pipeline import NotUp, Pipeline, connect_all, quantile, say, wait_quiet  # noqa: E402
from timers import CpuWindow, pids, rss_mb  # noqa: E402

from services.cli.console_accounts import set_demo_passwords  # noqa: E402
from shared.signing import RUNNER, Signer  # noqa: E402

ROW = re.compile(rb'<tr id="row-([0-9a-f-]{36})"')
FULL = b'data-full="yes"'
CHANGED = re.compile(rb'data-changed="([^"]*)"')
BOARD_P95_GOAL_MS = 300
STREAM_P99_GOAL_MS = 1000


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 1)


# --- signing in -------------------------------------------------------------------------------------


async def sign_in(base: str, username: str, password: str) -> httpx.AsyncClient:
    """A client holding a console session: the sign-in form's CSRF cookie and field, then the POST."""
    client = httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(60.0, connect=10.0))
    form = await client.get("/console/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if form.status_code != 200 or not csrf:
        raise RuntimeError(f"GET /console/signin: {form.status_code} {form.text[:200]}")
    r = await client.post("/console/signin", data={"csrf": csrf.group(1), "next": "/console/board",
                                                    "username": username, "password": password})
    if r.status_code != 303 or "whistle_session" not in client.cookies:
        raise RuntimeError(f"sign-in as {username}: {r.status_code} {r.text[:300]}")
    return client


def cookie_header(client: httpx.AsyncClient) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


# --- the board page ---------------------------------------------------------------------------------


async def board_page(client: httpx.AsyncClient, n: int) -> dict:
    """`n` sequential GET /console/board (after 3 unmeasured), each to its last byte."""
    times: list[float] = []
    rows = size = 0
    for i in range(n + 3):
        t0 = time.perf_counter()
        r = await client.get("/console/board")
        body = r.content
        t = time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f"GET /console/board: {r.status_code} {r.text[:300]}")
        if i >= 3:
            times.append(t)
        rows, size = len(ROW.findall(body)), len(body)
    times.sort()
    return {"board_p50_ms": ms(quantile(times, 0.5)), "board_p95_ms": ms(quantile(times, 0.95)),
            "board_max_ms": ms(times[-1]), "board_requests": n, "board_rows": rows, "board_kb": round(size / 1024, 1)}


# --- the streams ------------------------------------------------------------------------------------


class Stream:
    """One SSE connection, read raw (HTTP/1.1, chunked): when each summons' row first arrived."""

    def __init__(self, base: str, cookie: str, index: int):
        url = urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.cookie, self.index = cookie, index
        self.seen: dict[bytes, float] = {}  # summons id → time.time() its row first arrived
        self.announced: dict[bytes, float] | None = {} if index == 0 else None  # whistle id → first named changed
        self.events = self.full = self.bytes = 0
        self.ready = asyncio.Event()
        self.closing = False
        self.dropped: str | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        try:
            reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 24)
            self.writer.write(
                f"GET /console/board/stream HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Accept: text/event-stream\r\nCookie: {self.cookie}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
            while True:
                event = await reader.readuntil(b"\n\n")  # one SSE event (chunk framing comes along, ignored)
                t = time.time()
                self.bytes += len(event)
                if b"retry:" in event:
                    self.ready.set()
                if b"event: board" not in event:
                    continue
                self.events += 1
                self.full += FULL in event
                for sid in ROW.findall(event):
                    self.seen.setdefault(sid, t)
                if self.announced is not None and (changed := CHANGED.search(event)):
                    for wid in changed.group(1).split():
                        self.announced.setdefault(wid, t)
        except Exception as exc:  # noqa: BLE001 — any end before the bench closes it is a drop
            if not self.closing:
                self.dropped = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            self.ready.set()

    def close(self) -> None:
        self.closing = True
        if self.writer is not None:
            self.writer.close()


async def issued_count(js) -> int:
    info = await js.stream_info("EVENTS", subjects_filter="summons.issued.>")  # one subject per whistle
    return sum((info.state.subjects or {}).values())


async def watch_ledger(db, since: datetime, seen: dict[str, float], stop: asyncio.Event) -> None:
    """When each new summons' row first shows in the ledger's projection (polled every 0.2 s): the part
    of the lag that is the read model's, not the console's."""
    while not stop.is_set():
        with contextlib.suppress(Exception):
            for r in await db.fetch("SELECT id::text AS id, whistle_id::text AS w FROM ledger.summons"
                                    " WHERE issued_at >= $1", since):
                seen.setdefault(r["id"], time.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def sample_rss(pid: int | None, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        if (v := rss_mb(pid)) is not None:
            peak[0] = max(peak[0], v)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def live(args: argparse.Namespace, where: dict, cookies: list[str], js, db) -> dict:
    procs = pids(where)
    gateway = procs.get("gateway")
    rss_before = rss_mb(gateway)
    streams = [Stream(where["base"], cookies[i % len(cookies)], i) for i in range(args.streams)]
    tasks = [asyncio.create_task(s.run()) for s in streams]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in streams)), 60)
    opened = [s for s in streams if not s.dropped]
    say(f"{len(opened)}/{len(streams)} streams open; gateway RSS {rss_mb(gateway)} MB")
    if len(opened) < len(streams):
        say("refused:", {s.dropped for s in streams if s.dropped})
    first_seq = (await js.stream_info("EVENTS")).state.last_seq + 1
    issued_before = await issued_count(js)
    n = int(args.rate * args.seconds)
    load = Load(where, n, args.rate, give_up_s=60.0, run=datetime.now().strftime("console-%H%M%S"))
    peak, stop = [rss_before or 0.0], asyncio.Event()
    sampler = asyncio.create_task(sample_rss(gateway, peak, stop))
    in_ledger: dict[str, float] = {}
    ledger_db = await asyncpg.connect(where["dsn"])
    ledger_watch = asyncio.create_task(watch_ledger(ledger_db, datetime.now(UTC) - timedelta(seconds=5), in_ledger, stop))
    window = CpuWindow(procs)
    load_avg_before = os.getloadavg()

    async def progress() -> None:
        while True:
            await asyncio.sleep(5)
            seen = sorted(len(s.seen) for s in streams)
            say(f"accepted={len(load.accepted)}/{n} rows seen per stream min={seen[0]} max={seen[-1]} "
                f"dropped={sum(1 for s in streams if s.dropped)} gateway RSS {rss_mb(gateway)} MB")

    ticker = asyncio.create_task(progress())
    t0 = time.monotonic()
    await load.drive()
    load_s = time.monotonic() - t0
    ids = sorted(set(load.accepted.values()))
    say(f"load over: {len(ids)} accepted in {load_s:.1f} s; waiting for every stream to show them")
    # the summons of the accepted whistles (routing's own record: lead and co-handlers)
    deadline = time.monotonic() + args.drain_s
    wanted: set[bytes] = set()
    while time.monotonic() < deadline:
        rows = await db.fetch("SELECT summons_id::text AS s FROM routing.assignments WHERE whistle_id = ANY($1::uuid[])",
                              ids)
        wanted = {r["s"].encode() for r in rows}
        if len(wanted) >= len(ids) and all(wanted <= s.seen.keys() for s in streams if not s.dropped):
            break
        await asyncio.sleep(1.0)
    drained_s = time.monotonic() - t0 - load_s
    cpu = window.stop()
    load_avg_after = os.getloadavg()
    stop.set()
    await sampler
    await ledger_watch
    await ledger_db.close()
    ticker.cancel()
    rss_peak = peak[0]
    for s in streams:
        s.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    rss_after = rss_mb(gateway)

    # summons id → JetStream's stored time, for every summons.issued stored since the streams opened
    stored = await stored_times(js, first_seq, await issued_count(js) - issued_before)
    to_last: list[float] = []
    pairs: list[float] = []
    missing_somewhere = pairs_missing = 0
    live_streams = [s for s in streams if not s.dropped]
    for sid in wanted:
        at = stored.get(sid.decode())
        if at is None:
            continue
        times = [s.seen[sid] - at for s in live_streams if sid in s.seen]
        pairs += times
        if len(times) < len(live_streams):
            missing_somewhere += 1
            pairs_missing += len(live_streams) - len(times)
        elif times:
            to_last.append(max(times))
    to_last.sort()
    pairs.sort()
    ledger_lag = sorted(in_ledger[sid.decode()] - stored[sid.decode()] for sid in wanted
                        if sid.decode() in in_ledger and sid.decode() in stored)
    whistle_of = dict(await db.fetch("SELECT summons_id::text, whistle_id::text FROM routing.assignments"
                                     " WHERE summons_id = ANY($1::uuid[])", [w.decode() for w in wanted]))
    first = streams[0].announced or {}
    announce_lag = sorted(first[whistle_of[sid.decode()].encode()] - stored[sid.decode()] for sid in wanted
                          if sid.decode() in stored and whistle_of.get(sid.decode(), "").encode() in first)
    dropped = [s for s in streams if s.dropped]
    return {
        "streams": args.streams, "rate": args.rate, "seconds": args.seconds, "offered": n, "accepted": len(ids),
        "summons": len(wanted),
        "stream_p50_ms": ms(quantile(to_last, 0.5)), "stream_p99_ms": ms(quantile(to_last, 0.99)),
        "stream_max_ms": ms(to_last[-1] if to_last else None),
        "pair_p50_ms": ms(quantile(pairs, 0.5)), "pair_p99_ms": ms(quantile(pairs, 0.99)),
        "ledger_row_p50_ms": ms(quantile(ledger_lag, 0.5)), "ledger_row_p99_ms": ms(quantile(ledger_lag, 0.99)),
        "ledger_row_missing": len(wanted) - len(ledger_lag),
        "announced_p50_ms": ms(quantile(announce_lag, 0.5)), "announced_p99_ms": ms(quantile(announce_lag, 0.99)),
        "streams_dropped": len(dropped), "drop_reasons": sorted({s.dropped for s in dropped})[:5],
        "summons_missing_somewhere": missing_somewhere, "pairs_missing": pairs_missing,
        "gateway_rss_mb": {"before_streams": rss_before, "peak": rss_peak, "after": rss_after},
        "cpu_util": cpu,
        "loadavg_before": [round(x, 2) for x in load_avg_before], "loadavg_after": [round(x, 2) for x in load_avg_after],
        "load_s": round(load_s, 1), "drain_s": round(drained_s, 1),
        "accept_p50_s": round(quantile(sorted(load.accept_s), 0.5) or 0, 3),
        "accept_p99_s": round(quantile(sorted(load.accept_s), 0.99) or 0, 3),
        "http_statuses": {str(k): v for k, v in sorted(load.statuses.items())}, "client_errors": dict(load.errors),
        "board_events_per_stream": round(sum(s.events for s in streams) / len(streams), 1),
        "full_reloads_per_stream": round(sum(s.full for s in streams) / len(streams), 1),
        "mb_per_stream": round(sum(s.bytes for s in streams) / len(streams) / 2**20, 2),
    }


# --- the run ------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, where: dict) -> dict:
    creds = where["creds"]
    if not creds.get("console"):  # signed as the runner, with the key `whistle up` made in its home
        runner = json.loads((Path(where["home"]) / "command-keys.json").read_text())[RUNNER]
        creds["console"] = await set_demo_passwords(where["nats_url"], creds, Signer.parse(f"{RUNNER}:{runner}"))
    console = creds["console"]
    nc, db = await connect_all(where)
    js = nc.jetstream()
    clients: list[httpx.AsyncClient] = []
    try:
        for role in ("dispatcher", "supervisor"):
            clients.append(await sign_in(where["base"], console[role]["username"], console[role]["password"]))
        have = await db.fetchval("SELECT count(*) FROM ledger.summons WHERE state IN ('issued', 'reported', 'on_site')")
        if have < args.open:
            say(f"{have} open summons: blowing {args.open - have} whistles")
            seeder = Pipeline(where, nc, db, args.open - have, args.concurrency)
            armed = await seeder.run(300.0)
            say(f"{len(armed)} armed; waiting for the consumers to go idle")
        if not await wait_quiet(js, 300):
            raise RuntimeError("the EVENTS consumers did not go idle")
        open_summons = await db.fetchval(
            "SELECT count(*) FROM ledger.summons s JOIN ledger.whistles w ON w.id = s.whistle_id"
            " WHERE s.state IN ('issued', 'reported', 'on_site') AND w.status <> 'closed'")
        say(f"{open_summons} open summons on the board; timing the first page")
        out: dict = {"open_summons": open_summons, "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
        out.update(await board_page(clients[0], args.board_requests))
        say(f"board p95 {out['board_p95_ms']} ms; opening {args.streams} streams")
        out.update(await live(args, where, [cookie_header(c) for c in clients], js, db))
        out["goals_met"] = bool(
            out["board_p95_ms"] is not None and out["board_p95_ms"] <= BOARD_P95_GOAL_MS
            and out["stream_p99_ms"] is not None and out["stream_p99_ms"] <= STREAM_P99_GOAL_MS
            and not out["streams_dropped"] and not out["summons_missing_somewhere"])
        out["home"] = str(where["home"])
        return out
    finally:
        for c in clients:
            await c.aclose()
        await db.close()
        with contextlib.suppress(Exception):
            await nc.close()


def main(args: argparse.Namespace) -> dict:
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="whistle-console-"))
    system = System(home.resolve())
    try:
        where = system.start()
        say(f"system up at {where['base']}; pids in {home / 'pids.json'}")
        return asyncio.run(run(args, where))
    finally:
        say("stopping the system")
        system.stop()
        say(f"logs in {home}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--open", type=int, default=5000, help="open summons on the board before measuring (5000)")
    p.add_argument("--concurrency", type=int, default=32, help="POSTs in flight while opening them (32)")
    p.add_argument("--board-requests", type=int, default=100, help="sequential board first pages timed (100)")
    p.add_argument("--streams", type=int, default=200, help="SSE streams on the gateway (200)")
    p.add_argument("--rate", type=float, default=200.0, help="whistles offered a second during the window (200)")
    p.add_argument("--seconds", type=float, default=30.0, help="how long the load lasts (30)")
    p.add_argument("--drain-s", type=float, default=60.0,
                   help="after the load, wait at most this long for every stream to show every summons (60)")
    p.add_argument("--home", default=None, help="fresh state directory (default: a new temporary one)")
    args = p.parse_args(argv)
    if min(args.open, args.board_requests, args.streams) < 1 or args.rate <= 0 or args.seconds <= 0:
        p.error("counts, --rate and --seconds must be positive")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    try:
        result = main(arguments)
    except NotUp as exc:
        print(f"bench/console.py: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    print(json.dumps(result), flush=True)
    sys.exit(0 if result.get("goals_met") else 1)
