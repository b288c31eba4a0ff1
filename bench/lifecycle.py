"""A whistle's whole life at a fixed rate, on a fresh system: what each costs the machine, end to end.

    python bench/lifecycle.py [--rate 17] [-n 1500] [--replicas 1] [--think-ms 500] [--concurrency 512]

Starts `whistle up --no-demo` (notify.py's System: a fresh state directory on free ports, `--replicas` of every
service), waits `--settle` seconds, then offers `--rate` whistles a second (an open loop: whistle i starts i / rate
seconds after the first; at most `--concurrency` lives at once), each over HTTP as the people in it would:

1. the dispatcher blows it (`POST /v1/whistles`, a routine roof leak at building 7);
2. routing summons a responder (seen live on `summons.issued.>`, a core NATS subscription opened first);
3. `--think-ms` later, that responder, with its own token, reports, comes on site and resolves (`POST /v1/summons/{id}/report`,
   `arrive`, `resolve`);
4. the dispatcher verifies and strikes it off (`POST /v1/whistles/{id}/verify`) and records the resident's
   follow-up (`POST /v1/whistles/{id}/follow-up`, solved and satisfied).

Each whistle thus makes its events (blown, grouped, issued, routed, three reports, verified, closed,
followed up), arms its clocks and disarms them, and is notified, projected by the ledger and counted in the
three rates. Once every life is done it waits until every consumer of the events has caught up, then stops
the system.

`cpu_ms_per_whistle` is the CPU every process of the system (services, NATS, Postgres) used from the first
POST until the consumers caught up, per whistle, and `by_process` per process: at a district's rates this is
mostly the cost of handling messages one or a few at a time, which batches do not amortise. `cores` is that
CPU over the same wall time; `postgres_ms_per_whistle_by_service` splits Postgres's part by the service each
backend works for. `db_statements_per_whistle` is how many statements the services sent to
Postgres per whistle. `life_p50_ms` / `life_p99_ms` are from the first POST of a whistle to the answer to its
follow-up (six requests, the wait for routing and the think time), `summons_p50_ms` / `summons_p99_ms` from the blow to its
`summons.issued`. `late_starts` counts lives that began more than 0.1 s after their time (all
`--concurrency` in use); `summons_not_yet` how often a responder's first report found that response had not
yet taken in its summons (asked again 20 ms later).

Prints one JSON line on stdout; progress on stderr. Exit 0 when every life completed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: the other scripts

import pipeline  # noqa: E402
from notify import System  # noqa: E402  (puts the repo on the path)
from replicas import healthy  # noqa: E402

STEPS = ("report", "arrive", "resolve")


def say(*parts: object) -> None:
    print("[lifecycle]", *parts, file=sys.stderr, flush=True)


class Lives:
    """Drives the whistles' lives and records, in this process's perf_counter, how long each took."""

    def __init__(self, where: dict, creds: dict, n: int, rate: float, concurrency: int, think_s: float):
        self.where, self.n, self.rate, self.think_s = where, n, rate, think_s
        self.slots = asyncio.Semaphore(concurrency)
        self.dispatcher = {"Authorization": f"Bearer {creds['dispatcher']['token']}"}
        self.responder = {r["id"]: {"Authorization": f"Bearer {r['token']}"} for r in creds["responders"]}
        self.summons: dict[str, asyncio.Future] = {}  # whistle id → (summons id, responder id)
        self.early: dict[str, tuple[str, str]] = {}  # summons seen before its whistle's POST answered
        self.life_s: list[float] = []
        self.summons_s: list[float] = []
        self.late = 0
        self.not_yet = 0  # summons asked for before response had it
        self.failed = 0
        self.failures: list[str] = []
        self.done = 0

    async def on_issued(self, msg) -> None:
        try:
            body = json.loads(msg.data)
            whistle, found = str(body["whistle_id"]), (str(body["summons_id"]), str(body["responder_id"]))
        except (ValueError, KeyError, TypeError):
            return
        waiting = self.summons.get(whistle)
        if waiting is None:
            self.early.setdefault(whistle, found)
        elif not waiting.done():
            waiting.set_result(found)

    async def post(self, http: aiohttp.ClientSession, path: str, headers: dict, body: dict, ok: int = 200) -> dict:
        """POST; a summons that response has not taken in yet (404 no_such_summons: its `summons.issued` is on the
        way) is asked for again after 20 ms, as a responder told of it by another way would."""
        for _ in range(500):
            async with http.post(path, json=body, headers=headers) as r:
                data = await r.read()
            if r.status == ok:
                return json.loads(data)
            if r.status != 404 or b"no_such_summons" not in data:
                break
            self.not_yet += 1
            await asyncio.sleep(0.02)
        raise RuntimeError(f"{path.split('/')[-1]}: HTTP {r.status} {data[:200].decode(errors='replace')}")

    async def live(self, http: aiohttp.ClientSession, i: int) -> None:
        """One whistle from the blow to the follow-up."""
        try:
            t0 = time.perf_counter()
            blown = await self.post(http, "/v1/whistles", self.dispatcher,
                                    dict(pipeline.BODY, description=f"lifecycle whistle {i}"), ok=201)
            whistle = str(blown["id"])
            found = self.early.pop(whistle, None)
            if found is None:
                self.summons[whistle] = asyncio.get_running_loop().create_future()
                found = await asyncio.wait_for(self.summons[whistle], 120)
            self.summons_s.append(time.perf_counter() - t0)
            summons, responder = found
            await asyncio.sleep(self.think_s)  # told, the responder opens it
            for step in STEPS:
                await self.post(http, f"/v1/summons/{summons}/{step}", self.responder[responder], {"note": step})
            await self.post(http, f"/v1/whistles/{whistle}/verify", self.dispatcher, {"note": "checked"})
            await self.post(http, f"/v1/whistles/{whistle}/follow-up", self.dispatcher,
                            {"solved": True, "satisfaction": "satisfied"})
            self.life_s.append(time.perf_counter() - t0)
            self.done += 1
        except Exception as exc:
            self.failed += 1
            if len(self.failures) < 5:
                self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.slots.release()

    async def run(self, nc) -> float:
        """Every life, started on time; returns the wall seconds from the first start to the last end."""
        sub = await nc.subscribe("summons.issued.>", cb=self.on_issued, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nc.flush()
        lives: list[asyncio.Task] = []
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(base_url=self.where["base"], connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=60.0, connect=10.0)) as http:
            first = time.perf_counter()
            ticker = asyncio.create_task(self.progress(first))
            try:
                for i in range(self.n):
                    if (wait := first + i / self.rate - time.perf_counter()) > 0:
                        await asyncio.sleep(wait)
                    await self.slots.acquire()
                    if time.perf_counter() - (first + i / self.rate) > 0.1:
                        self.late += 1
                    lives.append(asyncio.create_task(self.live(http, i)))
                await asyncio.gather(*lives)
            finally:
                ticker.cancel()
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        return time.perf_counter() - first

    async def progress(self, first: float) -> None:
        while True:
            await asyncio.sleep(5.0)
            say(f"t={time.perf_counter() - first:6.1f}s done={self.done} failed={self.failed}")


async def measure(where: dict, creds: dict, args: argparse.Namespace) -> dict:
    nc, db = await pipeline.connect_all(where)
    try:
        js = nc.jetstream()
        system = pipeline.pids(where)
        events0, clocks0 = await pipeline.last_seq(js, pipeline.EVENTS_STREAM), await pipeline.last_seq(js, pipeline.CLOCKS_STREAM)
        cpu0, metrics0 = pipeline.cpu_seconds(system), await pipeline.scrape(where)
        backends0 = await pipeline.backend_cpu(db, system.get("postgres"))
        wall0 = time.perf_counter()
        lives = Lives(where, creds, args.whistles, args.rate, args.concurrency, args.think_ms / 1e3)
        driven_s = await lives.run(nc)
        caught_up = await pipeline.wait_quiet(js, 120.0)
        wall = time.perf_counter() - wall0
        cpu1, metrics1 = pipeline.cpu_seconds(system), await pipeline.scrape(where)
        n = max(1, lives.done)
        out = {"n": args.whistles, "rate": args.rate, "replicas": args.replicas, "completed": lives.done,
               "failed": lives.failed, "late_starts": lives.late, "summons_not_yet": lives.not_yet,
               "whistles_per_s": round(lives.done / driven_s, 1),
               "life_p50_ms": pipeline.ms(pipeline.quantile(sorted(lives.life_s), 0.5)),
               "life_p99_ms": pipeline.ms(pipeline.quantile(sorted(lives.life_s), 0.99)),
               "summons_p50_ms": pipeline.ms(pipeline.quantile(sorted(lives.summons_s), 0.5)),
               "summons_p99_ms": pipeline.ms(pipeline.quantile(sorted(lives.summons_s), 0.99))}
        spent = pipeline.cpu_per_whistle(cpu0, cpu1, n)
        out["cpu_ms_per_whistle"] = spent["cpu_ms_per_whistle"]
        out["cores"] = round(spent["cpu_ms_per_whistle"] * n / 1e3 / wall, 3)
        out["by_process"] = spent["cpu_ms_per_whistle_by_process"]
        out.update(pipeline.postgres_per_whistle(backends0, await pipeline.backend_cpu(db, system.get("postgres")), n))
        out.update(pipeline.statements_per_whistle(pipeline.statement_totals(metrics0),
                                                   pipeline.statement_totals(metrics1), n))
        events, clocks = await pipeline.last_seq(js, pipeline.EVENTS_STREAM), await pipeline.last_seq(js, pipeline.CLOCKS_STREAM)
        out["events_per_whistle"] = round((events - events0) / n, 2)
        out["clock_msgs_per_whistle"] = round((clocks - clocks0) / n, 2)
        if not caught_up:
            out["cpu_window_caught_up"] = False
        if lives.failures:
            out["failures"] = lives.failures
        return out
    finally:
        await db.close()
        with contextlib.suppress(Exception):
            await nc.close()


def main(args: argparse.Namespace) -> dict:
    home = Path(tempfile.mkdtemp(prefix="whistle-lifecycle-")) / "system"
    system = System(home, replicas=args.replicas)
    try:
        where = system.start()
        healthy(where["base"])
        time.sleep(args.settle)  # the partitions dealt out, every consumer made
        say(f"{args.whistles} lives at {args.rate}/s, {args.replicas} replica(s) of every service; logs in {home}")
        return asyncio.run(measure(where, where["creds"], args))
    finally:
        system.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=17.0, help="whistles started a second (17: a district's peak hour)")
    p.add_argument("-n", "--whistles", type=int, default=1500, help="whistles (1500)")
    p.add_argument("--replicas", type=int, default=1, help="replicas of every service (1)")
    p.add_argument("--concurrency", type=int, default=512, help="lives at once, at most (512)")
    p.add_argument("--think-ms", type=float, default=500.0,
                   help="ms between a summons seen and its responder's first report (500)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds between the system up and the first whistle (5)")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.whistles < 1 or args.replicas < 1 or args.concurrency < 1:
        p.error("--rate, --whistles, --replicas and --concurrency must be positive")
    return args


if __name__ == "__main__":
    result = main(parse_args())
    print(json.dumps(result), flush=True)
    sys.exit(0 if result["completed"] == result["n"] else 1)
