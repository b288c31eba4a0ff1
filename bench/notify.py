"""Notifier benchmark: N summons issued at once, each notified to a webhook sink.

    python bench/notify.py [-n 10000] [--responders 50] [--home DIR] [--timeout 120]

Like chaos.py it starts its own system (`whistle up --no-demo`, on free ports, in a fresh state
directory: `--home`, new or empty, default a new temporary one, kept for its logs), with the webhook
sink's host on the notifier's allow-list (NOTIFIER_WEBHOOK_ALLOWED_HOSTS). Then:

 1. a webhook sink in this process (asyncio + httptools, keep-alive; it records each request's
    `webhook-id`, body and arrival time, `time.time()`, and answers 200);
 2. `--responders` contact rules through `PUT /v1/responders/{id}/contacts`, one webhook step each,
    to the sink;
 3. once every EVENTS consumer is idle: N `SummonsIssued` events (routine roof leaks, spread over the
    responders) published pipelined straight into JetStream on `summons.issued` (the relay's own
    publisher, `Nats-Msg-Id` = event id), as routing would. Response, escalation and the ledger take
    them too, as they do in production;
 4. waits until the sink has every summons (or `--timeout` after the last publish), then reads each
    summons.issued message's stored time (its JetStream timestamp) back from the stream.

Prints one JSON line: `notifications_per_s` (N / from the first summons stored to the last arrival
at the sink), `p50_ms` / `p99_ms` / `max_ms` (stored → arrival), `duplicates` (requests beyond one
per webhook-id), `missing` (summons never notified), `bad_signatures`, and diagnostics. Progress on
stderr. Exit 0 when nothing is missing or doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httptools  # noqa: E402
import httpx  # noqa: E402
import nats  # noqa: E402
from chaos import free_ports  # noqa: E402
from pipeline import NotUp, locate, quantile, wait_quiet  # noqa: E402  (bench/ is on the path: the script's folder)
from standardwebhooks import Webhook  # noqa: E402
from timers import CpuWindow, pids  # noqa: E402

from shared.contracts import ResponderKind, SummonsIssued, Tier  # noqa: E402
from shared.ids import uuid7  # noqa: E402
from shared.runtime.relay import PipelinedPublisher  # noqa: E402
from shared.subjects import SERVICES  # noqa: E402

TICK_S = 0.02  # --rate: the summons are published in slices this often
SECRET = "whsec_" + "YmVuY2gtbm90aWZ5LWJlbmNoLW5vdGlmeS1iZW5jaA=="
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def say(*parts: object) -> None:
    print("[notify]", *parts, file=sys.stderr, flush=True)


# --- the sink -------------------------------------------------------------------------------------


class Sink:
    """Every request's (webhook-id, body, signature headers, arrival time); answered 200 at once."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes, dict[str, str], float]] = []
        self.arrived = asyncio.Event()

    def protocol(self) -> asyncio.Protocol:
        sink = self

        class Connection(asyncio.Protocol):
            def connection_made(self, transport: asyncio.Transport) -> None:
                self.transport = transport
                self.parser = httptools.HttpRequestParser(self)

            def data_received(self, data: bytes) -> None:
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserError:
                    self.transport.close()

            def on_message_begin(self) -> None:
                self.headers: dict[str, str] = {}
                self.body: list[bytes] = []

            def on_header(self, name: bytes, value: bytes) -> None:
                key = name.decode().lower()
                if key.startswith("webhook-"):
                    self.headers[key] = value.decode()

            def on_body(self, body: bytes) -> None:
                self.body.append(body)

            def on_message_complete(self) -> None:
                sink.requests.append((self.headers.get("webhook-id", ""), b"".join(self.body), self.headers,
                                      time.time()))
                sink.arrived.set()
                self.transport.write(OK)

        return Connection()


# --- the system under test ---------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class System:
    """`whistle up --no-demo` in a fresh state directory on free ports, the sink's host allowed; with
    `replicas` > 1, that many processes of every service (`--replicas`)."""

    def __init__(self, home: Path, replicas: int = 1):
        self.home = home
        self.replicas = replicas
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> dict:
        self.home.mkdir(parents=True, exist_ok=True)
        if any(self.home.iterdir()):
            raise NotUp(f"{self.home} is not empty: the bench needs a fresh state directory")
        ports = free_ports(2 + len(SERVICES) * self.replicas)  # gateway, NATS, a telemetry port per process
        for name in ("NATS_URL", "DATABASE_URL", "WHISTLE_BASE", "WHISTLE_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(WHISTLE_HOME=str(self.home), WHISTLE_PORT=str(ports), WHISTLE_NATS_PORT=str(ports + 1),
                          WHISTLE_TELEMETRY_BASE_PORT=str(ports + 2), PYTHONUNBUFFERED="1",
                          NOTIFIER_WEBHOOK_ALLOWED_HOSTS='["127.0.0.1"]')
        say(f"starting the system in {self.home}")
        replicas = ["--replicas", str(self.replicas)] if self.replicas > 1 else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "up", "--no-demo", *replicas], cwd=REPO, env=dict(os.environ),
            stdout=(self.home / "runner.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        creds = self.home / "credentials.json"
        deadline = time.monotonic() + timeout
        while not creds.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise NotUp(f"whistle up did not come up; see {self.home / 'runner.log'}")
            time.sleep(0.3)
        return {**locate(argparse.Namespace(nats_url=None, database_url=None)),
                "creds": json.loads(creds.read_text())}

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(2)  # Ctrl-C: the runner stops everything
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        with contextlib.suppress(OSError, ValueError):
            for name, pid in json.loads((self.home / "pids.json").read_text()).items():
                if alive(pid):
                    say(f"{name} (pid {pid}) outlived the runner: killed")
                    os.kill(pid, 9)


# --- the run -------------------------------------------------------------------------------------------


async def put_rules(where: dict, sink_port: int, responders: list[str]) -> None:
    headers = {"Authorization": f"Bearer {where['creds']['supervisor']['token']}"}
    async with httpx.AsyncClient(base_url=where["base"], headers=headers, timeout=30) as c:
        for rid in responders:
            rule = {"steps": [{"channel": "webhook", "address": f"http://127.0.0.1:{sink_port}/hook/{rid}",
                               "secret": SECRET}]}
            r = await c.put(f"/v1/responders/{rid}/contacts", json=rule)
            if r.status_code != 200:
                raise RuntimeError(f"PUT contacts {rid}: {r.status_code} {r.text}")


def summons(n: int, responders: list[str]) -> list[SummonsIssued]:
    now = datetime.now(UTC)
    return [SummonsIssued(
        occurred_at=now, whistle_id=uuid7(), actor="system:bench-notify", summons_id=uuid7(),
        responder_id=responders[i % len(responders)], responder_kind=ResponderKind.department,
        responder_name="Bench", category="roof_leak", tier=Tier.routine) for i in range(n)]


async def stored_times(js, first_seq: int, n: int) -> dict[str, float]:
    """summons id → when JetStream stored its summons.issued (read back after the window)."""
    out: dict[str, float] = {}
    seq = first_seq
    while len(out) < n:
        m = await js.get_msg("EVENTS", seq=seq, subject="summons.issued.>", next=True)
        out[json.loads(m.data)["summons_id"]] = m.time.timestamp()
        seq = m.seq + 1
    return out


async def run(args: argparse.Namespace, where: dict) -> dict:
    sink = Sink()
    server = await asyncio.get_running_loop().create_server(sink.protocol, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    responders = [r["id"] for r in where["creds"]["responders"]][:args.responders]  # contact rules name real ones
    await put_rules(where, port, responders)
    nc = await nats.connect(where["nats_url"])
    js = nc.jetstream()
    try:
        if not await wait_quiet(js, 120):
            raise RuntimeError("the EVENTS consumers did not go idle")
        events = summons(args.n, responders)
        first_seq = (await js.stream_info("EVENTS")).state.last_seq + 1
        bodies = [(e.published_subject, e.model_dump_json().encode(), {"Nats-Msg-Id": str(e.event_id)}) for e in events]
        pipe = PipelinedPublisher(nc)
        window = CpuWindow(pids(where))
        t0 = time.time()
        if args.rate:  # open loop: a slice every TICK_S, on schedule whatever the system does
            say(f"offering {args.n} summons.issued at {args.rate}/s")
            per_tick = max(1, round(args.rate * TICK_S))
            for i, start in enumerate(range(0, len(bodies), per_tick)):
                await asyncio.sleep(max(0.0, t0 + i * TICK_S - time.time()))
                await pipe.publish(bodies[start:start + per_tick], timeout=60)
        else:
            say(f"publishing {args.n} summons.issued at once")
            for start in range(0, len(bodies), 2000):
                await pipe.publish(bodies[start:start + 2000], timeout=60)
        published = time.time()
        wanted = {str(e.summons_id) for e in events}
        deadline = published + args.timeout
        while time.time() < deadline:
            seen = {r[0] for r in sink.requests}
            if len(seen) >= args.n:
                break
            say(f"t={time.time() - t0:5.1f}s sink={len(sink.requests)}")
            await asyncio.sleep(1.0)
        cpu = window.stop()
        await asyncio.sleep(2.0)  # late repeats, if any
        stored = await stored_times(js, first_seq, args.n)
    finally:
        await nc.close()
        server.close()
    first_at: dict[str, float] = {}
    ids: Counter = Counter()
    bad = 0
    signer = Webhook(SECRET)
    for msg_id, body, headers, at in sink.requests:
        ids[msg_id] += 1
        try:
            signer.verify(body, headers)
        except Exception:
            bad += 1
        s = json.loads(body)["data"]["summons_id"]
        first_at[s] = min(at, first_at.get(s, at))
    latencies = sorted(first_at[s] - stored[s] for s in first_at if s in stored)
    last = max(first_at.values()) if first_at else None
    begin = min(stored.values()) if stored else t0
    ms = lambda v: None if v is None else round(v * 1e3, 1)  # noqa: E731
    return {
        "n": args.n,
        "offered_per_s": args.rate or None,
        "notifications_per_s": round(len(first_at) / (last - begin), 1) if last else None,
        "p50_ms": ms(quantile(latencies, 0.50)),
        "p99_ms": ms(quantile(latencies, 0.99)),
        "max_ms": ms(latencies[-1] if latencies else None),
        "duplicates": sum(c - 1 for c in ids.values()),
        "missing": len(wanted - set(first_at)),
        "bad_signatures": bad,
        "publish_s": round(published - t0, 3),
        "stored_span_s": round(max(stored.values()) - begin, 3) if stored else None,
        "first_arrival_s": round(min(first_at.values()) - begin, 3) if first_at else None,
        "last_arrival_s": round(last - begin, 3) if last else None,
        "responders": args.responders,
        "cpu_util": cpu,  # CPU s / wall s per process from the first publish to the last arrival (1.0 = one core)
        # first arrivals in each second from the first summons stored: where the time goes
        "arrivals_by_second": [sum(1 for at in first_at.values() if int(at - begin) == i)
                               for i in range(int(last - begin) + 1)] if last else [],
    }


def main(args: argparse.Namespace) -> dict:
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="whistle-notify-"))
    system = System(home.resolve())
    try:
        where = system.start()
        return asyncio.run(run(args, where))
    finally:
        system.stop()
        say(f"logs in {home}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=10_000, help="summons issued at once (10000)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="offer the summons at this many per second instead of all at once (0: at once)")
    p.add_argument("--responders", type=int, default=50, help="responders the summons are spread over (50)")
    p.add_argument("--home", default=None, help="fresh state directory (default: a new temporary one)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds after the publish to wait for the sink")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    try:
        result = main(arguments)
    except NotUp as exc:
        print(f"bench/notify.py: {exc}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result), flush=True)
    sys.exit(0 if result["missing"] == 0 and result["duplicates"] == 0 else 1)
