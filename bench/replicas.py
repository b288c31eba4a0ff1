"""One replica of every service against several, alternately: bench/pipeline.py on a fresh system each time.

    python bench/replicas.py [--pairs 3] [--replicas 2] [-n 10000] [--concurrency 256] [--rate R] [--raw-messages 50000]

Each pair starts `whistle up --no-demo` (notify.py's System: a fresh state directory on free ports), runs
bench/pipeline.py against it and stops it, first with one replica of every service, then with
`--replicas`. Alternating, and one fresh system per run, because a shared machine's speed drifts by more
than the difference being measured: on the two cores of session 19 the same code ran 510–660 whistles/s
with one replica from one run to the next. A 10-million-iteration Python loop (in a function) is timed before each pair
(`loop_s`) to show how fast the machine was then.

With `--rate`, every run is offered the same load (pipeline.py's open loop): below what both can take,
whistles/s is the rate in both and the runs compare latency and CPU per whistle.

Prints one JSON line: `runs` (each run's main figures, in the order they ran), `median` (per replica
count: whistles/s, p50 and p99 ms, CPU ms per whistle, Postgres and NATS of it, Postgres statements per whistle, share
of raw JetStream), `ratio_by_pair` (whistles/s with `--replicas` over one replica, pair by pair) and
`ratio_of_medians`. Progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: the other scripts

import pipeline  # noqa: E402
from notify import System  # noqa: E402  (puts the repo on the path)

KEPT = ("offered_per_s", "late_posts", "whistles_per_s", "p50_ms", "p99_ms", "cpu_ms_per_whistle", "db_statements_per_whistle", "raw_js_msgs_per_s",
        "js_share_of_raw", "missing", "errors")


def say(*parts: object) -> None:
    print("[replicas]", *parts, file=sys.stderr, flush=True)


def loop_s() -> float:
    """How long this machine takes for 10 million iterations of an empty Python loop, now."""
    started = time.perf_counter()
    for _ in range(10_000_000):
        pass
    return round(time.perf_counter() - started, 2)


def healthy(base: str, timeout: float = 180.0) -> None:
    """Wait until the gateway's /healthz answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        if time.monotonic() > deadline:
            raise pipeline.NotUp(f"{base}/healthz did not answer 200 within {timeout:.0f} s")
        time.sleep(0.5)


def one_run(replicas: int, args: argparse.Namespace, home: Path) -> dict:
    """A fresh system with `replicas` of each service, bench/pipeline.py against it, stopped."""
    system = System(home, replicas=replicas)
    try:
        healthy(system.start()["base"])
        time.sleep(args.settle)  # the partitions dealt out, every consumer made
        rate = ["--rate", str(args.rate)] if args.rate else []
        out = asyncio.run(pipeline.main(pipeline.parse_args([
            "-n", str(args.whistles), "--concurrency", str(args.concurrency),
            "--raw-messages", str(args.raw_messages), *rate])))
    finally:
        system.stop()
    by_process = out.get("cpu_ms_per_whistle_by_process", {})
    run = {"replicas": replicas, **{k: out[k] for k in KEPT if k in out}}
    run["postgres_ms_per_whistle"] = by_process.get("postgres")
    run["nats_ms_per_whistle"] = round(sum(v for k, v in by_process.items() if k.startswith("nats")), 3)
    run["batch_messages_mean"] = out.get("batch_messages_mean", {})
    return run


def summary(runs: list[dict], replicas: int) -> dict:
    """Medians per replica count, and whistles/s with `replicas` over one replica, pair by pair."""
    median = {}
    for r in (1, replicas):
        mine = [run for run in runs if run["replicas"] == r]
        median[str(r)] = {k: round(statistics.median(run[k] for run in mine), 3)
                          for k in ("whistles_per_s", "p50_ms", "p99_ms", "cpu_ms_per_whistle", "postgres_ms_per_whistle",
                                    "nats_ms_per_whistle", "db_statements_per_whistle", "js_share_of_raw")
                          if all(run.get(k) is not None for run in mine)}
    one = [run["whistles_per_s"] for run in runs if run["replicas"] == 1]
    more = [run["whistles_per_s"] for run in runs if run["replicas"] == replicas]
    return {"median": median, "ratio_by_pair": [round(b / a, 3) for a, b in zip(one, more, strict=False)],
            "ratio_of_medians": round(median[str(replicas)]["whistles_per_s"] / median["1"]["whistles_per_s"], 3)}


def main(args: argparse.Namespace) -> dict:
    top = Path(tempfile.mkdtemp(prefix="whistle-replicas-"))
    runs = []
    for pair in range(args.pairs):
        loop = loop_s()
        for replicas in (1, args.replicas):
            say(f"pair {pair + 1} of {args.pairs}: {replicas} replica(s), the machine's loop {loop} s")
            runs.append({"pair": pair + 1, "loop_s": loop,
                         **one_run(replicas, args, top / f"pair{pair + 1}-r{replicas}")})
    say(f"logs in {top}")
    return {"n": args.whistles, "concurrency": args.concurrency, "pairs": args.pairs, "runs": runs,
            **summary(runs, args.replicas)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=3, help="pairs of runs, one replica then --replicas (3)")
    p.add_argument("--replicas", type=int, default=2, help="replicas of every service in each pair's second run (2)")
    p.add_argument("-n", "--whistles", type=int, default=10_000, help="whistles per run (10000)")
    p.add_argument("--concurrency", type=int, default=256, help="whistles in flight (256: the system's capacity)")
    p.add_argument("--rate", type=float, default=None,
                   help="offered whistles/s (pipeline.py's open loop); default none: as many as --concurrency allows")
    p.add_argument("--raw-messages", type=int, default=50_000, help="raw JetStream messages per run (0 skips)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds between a system up and its run (5)")
    args = p.parse_args(argv)
    if args.pairs < 1 or args.replicas < 2:
        p.error("--pairs must be at least 1 and --replicas at least 2")
    return args


if __name__ == "__main__":
    print(json.dumps(main(parse_args())))
