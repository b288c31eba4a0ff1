"""Intake over HTTP: whistles accepted per second, and latency at a fixed offered rate.

    .venv/bin/python bench/intake.py [--rate 500] [--seconds 10] [--closed-seconds 20] [--concurrency 64]

Against the system `whistle up` started (found like bench/pipeline.py: WHISTLE_HOME's
credentials.json or WHISTLE_BASE). Two runs, one JSON line:
- open loop at `--rate` whistles a second for `--seconds`: each POST /v1/whistles is sent at its
  scheduled time, and its latency counts from that time (a slow server cannot hide its queue);
  connections are opened and `--warmup` seconds of the same load sent before the clock starts;
- closed loop with `--concurrency` clients for `--closed-seconds`: the most it accepts
  (`accepted_per_s`).
Each run starts once every consumer has caught up (`quiet_wait_s`), so it is not measured against
the previous run's backlog. After the closed loop the bench waits until the whole system has handled
what was accepted (routed, summoned, clocks armed, projected): `drained_after_s` past the end, and
`end_to_end_per_s` = accepted / (closed-loop seconds + drained_after_s), the rate the whole system
sustains; `accepted_per_s` is the burst intake takes while the services behind it lag (they run at
a lower CPU priority, <SERVICE>_NICE).

The client is a small keep-alive HTTP/1.1 client on asyncio streams with the request bytes made
once: httpx spent more CPU per request than the gateway on this 2-core machine, so the load
generator measured itself. Each run reports the client's own CPU (`client_cpu_pct`, % of one core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nats  # noqa: E402
from pipeline import NotUp, locate, ms, quantile, say, wait_quiet  # noqa: E402

BODY = {"category": "noise", "description": "bench: noise at the west gate", "location": {"building": "3"},
        "tier": "routine", "source": "online"}


class Connection:
    """One keep-alive HTTP/1.1 connection: a request at a time, Content-Length bodies."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send a request made by `request_bytes`; the status and body. Reconnects once if the server closed."""
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                self.writer.write(raw)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
                continue
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            length = int(head[at + 17:head.index(b"\r\n", at + 2)]) if at >= 0 else 0
            body = await self.reader.readexactly(length) if length else b""
            if b"\r\nconnection: close" in lower:
                self.close()
            return status, body
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def request_bytes(where: dict, method: str, path: str, body: dict | None = None) -> bytes:
    """The whole request, made once and sent as often as needed."""
    url = urlsplit(where["base"])
    data = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {where['token']}\r\n"
            f"Content-Length: {len(data)}\r\n" + ("Content-Type: application/json\r\n" if body is not None else "")
            + "\r\n")
    return head.encode() + data


def endpoint(where: dict) -> tuple[str, int]:
    url = urlsplit(where["base"])
    return url.hostname or "127.0.0.1", url.port or 80


class Tally:
    """Latencies, statuses, and this process's CPU over a run."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    def add(self, status: int, latency: float) -> None:
        self.latencies.append(latency)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def summary(self, elapsed: float) -> dict:
        self.latencies.sort()
        cpu = time.process_time() - self.cpu0
        return {"accepted_per_s": round(self.statuses.get(201, 0) / elapsed, 1),
                "p50_ms": ms(quantile(self.latencies, 0.5)), "p99_ms": ms(quantile(self.latencies, 0.99)),
                "max_ms": ms(self.latencies[-1] if self.latencies else None), "statuses": self.statuses,
                "client_cpu_pct": round(100 * cpu / (time.perf_counter() - self.wall0), 1),
                "client_cpu_us_per_request": round(1e6 * cpu / max(1, len(self.latencies)), 1)}


async def open_loop(where: dict, rate: float, seconds: float, connections: int, warmup: float) -> dict:
    n = int(rate * seconds)
    raw = request_bytes(where, "POST", "/v1/whistles", BODY)
    health = request_bytes(where, "GET", "/healthz")
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    conns = [Connection(*endpoint(where)) for _ in range(connections)]
    await asyncio.gather(*(c.request(health) for c in conns))  # connected before the clock starts
    for c in conns:
        pool.put_nowait(c)
    if warmup > 0:  # the same load, not counted: first requests pay for cold caches on every side
        await _scheduled(pool, raw, rate, int(rate * warmup), Tally())
    tally = Tally()
    elapsed = await _scheduled(pool, raw, rate, n, tally)
    while not pool.empty():
        pool.get_nowait().close()
    return {"offered_per_s": rate, "sent": n, "accepted": tally.statuses.get(201, 0), "warmup_s": warmup,
            **tally.summary(elapsed)}


async def _scheduled(pool: asyncio.Queue[Connection], raw: bytes, rate: float, n: int, tally: Tally) -> float:
    """Send n requests at `rate`, each at its time; the seconds it took."""
    tasks: set[asyncio.Task] = set()

    async def one(due: float) -> None:
        conn = await pool.get()  # waiting for a free connection counts in the latency
        try:
            status, _ = await conn.request(raw)
        except (OSError, EOFError):
            status = 0
            conn.close()
        finally:
            pool.put_nowait(conn)
        tally.add(status, time.perf_counter() - due)

    # one scheduler starts each request at its time (never thousands of sleepers at once)
    start = time.perf_counter() + 0.2
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


async def closed_loop(where: dict, concurrency: int, seconds: float) -> dict:
    raw = request_bytes(where, "POST", "/v1/whistles", BODY)
    tally = Tally()
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        conn = Connection(*endpoint(where))
        try:
            while time.perf_counter() < stop:
                sent = time.perf_counter()
                try:
                    status, _ = await conn.request(raw)
                except (OSError, EOFError):
                    status = 0
                    conn.close()
                tally.add(status, time.perf_counter() - sent)
        finally:
            conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"concurrency": concurrency, **tally.summary(time.perf_counter() - began)}


async def main(args: argparse.Namespace) -> dict:
    where = locate(args)
    conn = Connection(*endpoint(where))
    try:
        status, body = await conn.request(request_bytes(where, "GET", "/healthz"))
    except (OSError, EOFError) as exc:
        raise NotUp(f"the system at {where['base']} is not reachable: {exc!r}") from None
    finally:
        conn.close()
    if status != 200:
        raise NotUp(f"the system at {where['base']} is not ready: {status} {body[:300]!r}")
    nc = await nats.connect(where["nats_url"])
    js = nc.jetstream()
    try:
        began = time.perf_counter()
        quiet = await wait_quiet(js, args.settle)
        quiet_wait = [round(time.perf_counter() - began, 1)]
        say(f"open loop: {args.rate}/s for {args.seconds} s")
        fixed = await open_loop(where, args.rate, args.seconds, args.connections, args.warmup)
        say(f"open loop: {fixed}")
        began = time.perf_counter()
        quiet = await wait_quiet(js, args.settle) and quiet  # let the services drain before the next run
        quiet_wait.append(round(time.perf_counter() - began, 1))
        say(f"closed loop: {args.concurrency} clients for {args.closed_seconds} s")
        most = await closed_loop(where, args.concurrency, args.closed_seconds)
        say(f"closed loop: {most}")
        began = time.perf_counter()
        drained = await wait_quiet(js, args.settle)
        drained_after = time.perf_counter() - began
    finally:
        await nc.close()
    accepted = most["statuses"].get(201, 0)
    return {"accepted_per_s": most["accepted_per_s"], "p50_ms": fixed["p50_ms"], "p99_ms": fixed["p99_ms"],
            "offered_per_s": args.rate, "accepted_at_offered_per_s": fixed["accepted_per_s"],
            "drained_after_s": round(drained_after, 1) if drained else None,
            "end_to_end_per_s": round(accepted / (args.closed_seconds + drained_after), 1) if drained else None,
            "quiet_before_runs": quiet, "quiet_wait_s": quiet_wait,
            "client_cpu_pct": {"open_loop": fixed["client_cpu_pct"], "closed_loop": most["client_cpu_pct"]},
            "open_loop": fixed, "closed_loop": most}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="open loop duration")
    parser.add_argument("--closed-seconds", type=float, default=20.0, help="closed loop duration")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--connections", type=int, default=256, help="open loop: keep-alive connections")
    parser.add_argument("--warmup", type=float, default=2.0, help="open loop: seconds of load before measuring")
    parser.add_argument("--settle", type=float, default=300.0,
                        help="longest wait for the consumers to catch up (before each run, and after the last)")
    parser.add_argument("--nats-url", default=None)
    parser.add_argument("--database-url", default=None)
    try:
        print(json.dumps(asyncio.run(main(parser.parse_args()))))
    except NotUp as exc:
        print(f"bench/intake.py: {exc}", file=sys.stderr)
        sys.exit(2)
