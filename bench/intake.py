"""Intake over HTTP: whistles accepted per second, and latency at a fixed offered rate.

    .venv/bin/python bench/intake.py [--rate 500] [--seconds 20] [--concurrency 64]

Against the system `whistle up` started (found like bench/pipeline.py: WHISTLE_HOME's
credentials.json or WHISTLE_BASE). Two runs, one JSON line:
- open loop at `--rate` whistles a second for `--seconds`: each POST /v1/whistles is sent at its
  scheduled time, and its latency counts from that time (a slow server cannot hide its queue);
- closed loop with `--concurrency` clients for `--seconds`: the most it accepts (`accepted_per_s`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import NotUp, http_client, locate, ms, quantile, say  # noqa: E402

BODY = {"category": "noise", "description": "bench: noise at the west gate", "location": {"building": "3"},
        "tier": "routine", "source": "online"}


async def open_loop(where: dict, rate: float, seconds: float) -> dict:
    n = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    tasks: set[asyncio.Task] = set()
    async with http_client(where, 256) as client:

        async def one(due: float) -> None:
            r = await client.post("/v1/whistles", json=BODY)
            latencies.append(time.perf_counter() - due)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

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
        elapsed = time.perf_counter() - start
    latencies.sort()
    accepted = statuses.get(201, 0)
    return {"offered_per_s": rate, "sent": n, "accepted": accepted, "accepted_per_s": round(accepted / elapsed, 1),
            "p50_ms": ms(quantile(latencies, 0.5)), "p99_ms": ms(quantile(latencies, 0.99)),
            "max_ms": ms(latencies[-1] if latencies else None), "statuses": statuses}


async def closed_loop(where: dict, concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    async with http_client(where, concurrency) as client:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                sent = time.perf_counter()
                r = await client.post("/v1/whistles", json=BODY)
                latencies.append(time.perf_counter() - sent)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {"concurrency": concurrency, "accepted_per_s": round(statuses.get(201, 0) / elapsed, 1),
            "p50_ms": ms(quantile(latencies, 0.5)), "p99_ms": ms(quantile(latencies, 0.99)), "statuses": statuses}


async def main(args: argparse.Namespace) -> dict:
    where = locate(args)
    async with http_client(where, 1) as client:
        try:
            (await client.get("/healthz")).raise_for_status()
        except Exception as exc:
            raise NotUp(f"the system at {where['base']} is not ready: {exc!r}") from None
    say(f"open loop: {args.rate}/s for {args.seconds} s")
    fixed = await open_loop(where, args.rate, args.seconds)
    say(f"open loop: {fixed}")
    await asyncio.sleep(args.settle)  # let the services drain before the next run
    say(f"closed loop: {args.concurrency} clients for {args.seconds} s")
    most = await closed_loop(where, args.concurrency, args.seconds)
    say(f"closed loop: {most}")
    return {"accepted_per_s": most["accepted_per_s"], "p50_ms": fixed["p50_ms"], "p99_ms": fixed["p99_ms"],
            "offered_per_s": args.rate, "accepted_at_offered_per_s": fixed["accepted_per_s"],
            "open_loop": fixed, "closed_loop": most}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--nats-url", default=None)
    parser.add_argument("--database-url", default=None)
    try:
        print(json.dumps(asyncio.run(main(parser.parse_args()))))
    except NotUp as exc:
        print(f"bench/intake.py: {exc}", file=sys.stderr)
        sys.exit(2)
