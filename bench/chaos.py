"""Chaos benchmark: whistles at a fixed rate while services are killed, Postgres restarted and NATS
paused; then what the system lost or did twice.

    .venv/bin/python bench/chaos.py [-n 5000] [--rate 50] [--kill-every-s 5] [--nats-pause-s 30]

Starts its own system (`whistle up --no-demo`) in a fresh state directory (`--home`, default a new
temporary one, kept afterwards for its logs) on free ports, with a short SLA policy written there so
every clock fires during the run: each whistle's report clock breaches 30 s after its summons, then
raises two ladder steps (at the deadline, and 15 s later). Then, at once:

- load: N whistles (`POST /v1/whistles`, routine roof leaks at building 7) offered open loop at
  `--rate` a second, each with its own Idempotency-Key; on a 5xx, 429, timeout or refused connection
  the client retries the same request with the same key (backoff 0.5 s doubling to 5 s) until it is
  accepted or `--give-up-s` has passed;
- faults, over a window of max(N / rate, 2 x nats pause + 10 s): kill -9 a random live service
  (from `<home>/pids.json`; the runner restarts it) every `--kill-every-s`; at a quarter of the
  window `pg_ctl restart -m fast` of the embedded Postgres (pg_ctl beside the postgres of
  `<home>/pg/postmaster.opts`, run as the data folder's owner, logging to `<home>/pg/log`); at half
  of it SIGSTOP of nats-server, SIGCONT `--nats-pause-s` later.

Once the faults are over and every whistle is answered or given up, it waits (up to
`--settle-timeout-s`) for the system to settle: every outbox empty, every durable consumer caught
up (nothing pending nor unacknowledged, but for clock firings escalation holds until they are due:
the clocks of whistles accepted late still have their ladder ahead), every accepted whistle routed
(`settle_s`, from the end of the faults). Then it waits for every clock of those whistles to finish its ladder (`clocks_done_s`)
and the consumers to catch up again, and counts, straight from each service's schema in Postgres:

- `lost`: accepted whistles routing never summoned anyone for (nor found unroutable);
- `duplicate_summons`: lead summons beyond the first per whistle (routing.assignments);
- `summons_without_clocks`: summons with no clock in escalation.clocks;
- `clocks_fired_twice`: (summons, clock) with more than one `sla.breached` (ledger.timeline);
- `escalations_twice`: (summons, clock, step, round) with more than one `escalation.raised`;
- `clocks_fired_early`: breaches or ladder steps stamped before their time (the deadline, plus
  the ladder's waits for a step);
- `outbox_rows_left`: rows in the five outboxes; `dead_letters`: rows in ledger.dead_letters;
- diagnostics: `duplicate_whistles` (intake rows beyond one per request), `whistles_not_in_ledger`,
  `summons_not_in_response`, `clocks_never_fired`, the client's statuses, retries and accept times,
  and what was done (`kills`, `postgres_restarts`, `nats_pauses`).

Prints one JSON line on stdout; progress on stderr. Exit 0 when every loss and duplicate count is 0
and the system settled, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import nats  # noqa: E402
from pipeline import BODY, NotUp, all_consumers, locate, quantile, say  # noqa: E402
from timers import REPO, healthy, pids, r3  # noqa: E402  (puts the repo on the path)

from services.cli.embedded import pg_ctl  # noqa: E402  (as the data folder's owner, logging to <data>/log)
from shared import subjects  # noqa: E402
from shared.services import NAMES  # noqa: E402

SERVICES = NAMES
SCHEMAS = subjects.SERVICES  # one schema, with an outbox, each
STREAMS = ("EVENTS", "CLOCKS", "DEADLETTER", "ADVISORIES")
REPORT_WITHIN_S = 30
LADDER = (("superior", 0), ("street_command", 15))  # (level, wait after the previous step, s)
STEP_AT = [sum(after for _, after in LADDER[:k + 1]) for k in range(len(LADDER))]  # step k+1: deadline + this


def policy() -> dict:
    """Every tier: wall time, report within 30 s, no warning, two ladder steps."""
    tier = {"basis": "wall", "report_within": f"{REPORT_WITHIN_S}s", "warn_at": None,
            "ladder": [{"level": level, "after": f"{after}s"} for level, after in LADDER]}
    return {"description": "bench/chaos.py: every clock fires during the run",
            "tiers": {t: tier for t in ("routine", "urgent", "complex")}}


def free_ports(n: int) -> int:
    """The first of n consecutive free TCP ports on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65000:
            continue
        held = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no block of free ports")


def alive(pid: int | None, name: str = "") -> bool:
    """The process runs (a zombie does not) and its command starts with `name` (a pid reused since is
    someone else's)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split(" ", 1)[0]
    return state not in ("Z", "X") and comm.startswith(name)


def command_of(process: str) -> str:
    """What a process of pids.json is called: nats-server, postgres, or a service's Python."""
    return {"nats": "nats-server", "postgres": "postgres"}.get(process, "python")


# --- the system under test ---------------------------------------------------------------------------


class System:
    """`whistle up --no-demo` in a fresh state directory on free ports, with the bench's SLA policy."""

    def __init__(self, home: Path):
        self.home = home
        self.proc: subprocess.Popen | None = None
        self.where: dict = {}

    def start(self, timeout: float = 180.0) -> dict:
        self.home.mkdir(parents=True, exist_ok=True)
        if any(self.home.iterdir()):
            raise NotUp(f"{self.home} is not empty: the bench needs a fresh state directory")
        (self.home / "chaos_policy.json").write_text(json.dumps(policy(), indent=2))
        ports = free_ports(2 + len(subjects.SERVICES))  # gateway, NATS, a telemetry port per service
        for name in ("NATS_URL", "DATABASE_URL", "WHISTLE_BASE", "WHISTLE_TOKEN"):  # its own servers, not others
            os.environ.pop(name, None)
        # in this process's environment too: `locate` finds the system from it, as every bench does
        os.environ.update(WHISTLE_HOME=str(self.home), WHISTLE_PORT=str(ports), WHISTLE_NATS_PORT=str(ports + 1),
                          WHISTLE_TELEMETRY_BASE_PORT=str(ports + 2), PYTHONUNBUFFERED="1",
                          ESCALATION_POLICY_FILE=str(self.home / "chaos_policy.json"))
        env = dict(os.environ)
        say(f"starting the system in {self.home}")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "up", "--no-demo"], cwd=REPO, env=env,
            stdout=(self.home / "runner.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        creds = self.home / "credentials.json"
        deadline = time.monotonic() + timeout
        while not creds.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise NotUp(f"whistle up did not come up; see {self.home / 'runner.log'}")
            time.sleep(0.3)
        self.where = locate(argparse.Namespace(nats_url=None, database_url=None))
        return self.where

    def stop(self) -> None:
        """Ctrl-C to the runner, which stops everything, the postmaster pg_ctl restarted included;
        whatever is left after it (a runner that failed) is stopped here."""
        if self.proc is None:
            return
        procs = pids({"home": self.home})
        if alive(procs.get("nats"), "nats-server"):  # never leave it stopped (a failed run may end mid-pause)
            os.kill(procs["nats"], signal.SIGCONT)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if alive(pids({"home": self.home}).get("postgres"), "postgres"):
            with contextlib.suppress(Exception):
                pg_ctl(self.home / "pg", "stop", "-m", "fast", "-w", "-t", "30", timeout=40)
        procs.update(pids({"home": self.home}))  # the postmaster running now, if pg_ctl could not stop it
        for name, pid in procs.items():
            if alive(pid, command_of(name)):
                say(f"{name} (pid {pid}) outlived the runner: killed")
                os.kill(pid, signal.SIGKILL)


# --- load ----------------------------------------------------------------------------------------------


class Load:
    """N whistles offered open loop at a fixed rate; each retried with its Idempotency-Key until accepted."""

    def __init__(self, where: dict, n: int, rate: float, give_up_s: float, run: str):
        self.where, self.n, self.rate, self.give_up_s, self.run = where, n, rate, give_up_s, run
        self.accepted: dict[int, str] = {}  # request index -> whistle id
        self.accept_s: list[float] = []  # from the first attempt to the accepting answer
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()
        self.retries = 0
        self.gave_up = 0
        self.refused = 0
        self.key_conflicts = 0  # a retry answered with another whistle than before
        self.done = asyncio.Event()

    async def drive(self) -> None:
        # httpx, not pipeline.py's aiohttp client: at this rate its CPU does not matter, and `one` retries on
        # its errors; a request queued for a connection is not a failure (no pool timeout)
        client = httpx.AsyncClient(base_url=self.where["base"], headers={"Authorization": f"Bearer {self.where['token']}"},
                                   limits=httpx.Limits(max_connections=64),
                                   timeout=httpx.Timeout(15.0, connect=5.0, pool=None))
        started = time.monotonic()
        try:
            tasks = []
            for i in range(self.n):
                await asyncio.sleep(max(0.0, started + i / self.rate - time.monotonic()))
                tasks.append(asyncio.create_task(self.one(client, i)))
            await asyncio.gather(*tasks)
        finally:
            await client.aclose()
            self.done.set()

    async def one(self, client: httpx.AsyncClient, i: int) -> None:
        body = dict(BODY, description=f"chaos {self.run} {i}")
        headers = {"Idempotency-Key": f"chaos-{self.run}-{i}"}
        first, backoff = time.monotonic(), 0.5
        while True:
            wait = backoff
            try:
                r = await client.post("/v1/whistles", json=body, headers=headers)
                self.statuses[r.status_code] += 1
                if r.status_code in (200, 201):
                    whistle = r.json()["id"]
                    if self.accepted.setdefault(i, whistle) != whistle:
                        self.key_conflicts += 1
                    self.accept_s.append(time.monotonic() - first)
                    return
                if r.status_code == 429:
                    wait = float(r.headers.get("Retry-After") or backoff)
                elif r.status_code < 500:
                    self.refused += 1
                    say(f"whistle {i} refused: {r.status_code} {r.text[:200]}")
                    return
            except httpx.HTTPError as exc:
                self.errors[type(exc).__name__] += 1
            if time.monotonic() - first > self.give_up_s:
                self.gave_up += 1
                return
            self.retries += 1
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, 5.0)


# --- faults ----------------------------------------------------------------------------------------------


class Chaos:
    """kill -9 of a random service every few seconds, one Postgres restart, one NATS pause."""

    def __init__(self, home: Path, window_s: float, kill_every_s: float, nats_pause_s: float, rng: random.Random):
        self.home, self.window_s, self.kill_every_s, self.nats_pause_s = home, window_s, kill_every_s, nats_pause_s
        self.rng = rng
        self.started = self.ended = 0.0
        self.kills: list[dict] = []
        self.postgres_restarts: list[dict] = []
        self.nats_pauses: list[dict] = []

    def t(self) -> float:
        return round(time.monotonic() - self.started, 1)

    async def run(self) -> None:
        self.started = time.monotonic()
        await asyncio.gather(self.kill_loop(), self.restart_postgres(self.window_s / 4),
                             self.pause_nats(self.window_s / 2))
        self.ended = time.monotonic()

    async def kill_loop(self) -> None:
        while True:
            await asyncio.sleep(self.kill_every_s)
            if time.monotonic() - self.started >= self.window_s:
                return
            procs = pids({"home": self.home})
            live = [s for s in SERVICES if alive(procs.get(s), "python")]
            if not live:
                self.kills.append({"t": self.t(), "service": None})  # all down, restarting
                continue
            service = self.rng.choice(live)
            with contextlib.suppress(ProcessLookupError):
                os.kill(procs[service], signal.SIGKILL)
            self.kills.append({"t": self.t(), "service": service})
            say(f"t={self.t()}s kill -9 {service} (pid {procs[service]})")

    async def restart_postgres(self, at: float) -> None:
        await asyncio.sleep(at)
        before = pids({"home": self.home}).get("postgres")
        say(f"t={self.t()}s pg_ctl restart -m fast")
        t0 = time.monotonic()
        done = await asyncio.to_thread(pg_ctl, self.home / "pg", "restart", "-m", "fast", "-w", "-t", "60", timeout=90)
        code, output = done.returncode, done.stdout.strip()
        took = round(time.monotonic() - t0, 2)
        after = pids({"home": self.home}).get("postgres")
        self.postgres_restarts.append({"t": self.t(), "took_s": took, "exit_code": code, "pid_before": before,
                                       "pid_after": after})
        say(f"t={self.t()}s postgres restarted in {took} s (exit {code}){'' if code == 0 else ': ' + output[-300:]}")

    async def pause_nats(self, at: float) -> None:
        await asyncio.sleep(at)
        pid = pids({"home": self.home}).get("nats")
        if not alive(pid, "nats-server"):
            self.nats_pauses.append({"t": self.t(), "paused_s": 0, "error": "no nats pid"})
            return
        say(f"t={self.t()}s SIGSTOP nats-server (pid {pid}) for {self.nats_pause_s:.0f} s")
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            await asyncio.sleep(self.nats_pause_s)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.nats_pauses.append({"t": self.t(), "paused_s": round(time.monotonic() - t0, 1), "pid": pid})
        say(f"t={self.t()}s SIGCONT nats-server")


# --- what the system holds --------------------------------------------------------------------------


async def query(where: dict, work):
    """`work(conn)` on a fresh connection (Postgres may have restarted since the last one)."""
    conn = await asyncpg.connect(where["dsn"], timeout=5)
    try:
        return await work(conn)
    finally:
        await conn.close()


async def consumers_behind(where: dict, held_firings: bool = True) -> int:
    """Messages every durable consumer of the system's streams has pending or unacknowledged; with
    `held_firings` false, the clock firings escalation holds until their time (delivered ahead of it,
    unacknowledged until due: future work, not a backlog) are not counted."""
    nc = await nats.connect(where["nats_url"], connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        behind = 0
        for stream in STREAMS:
            for c in await all_consumers(js, stream):
                if c.config.durable_name:  # not the short-lived ones (escalation's reconcile)
                    held = stream == "CLOCKS" and not held_firings
                    behind += (c.num_pending or 0) + (0 if held else c.num_ack_pending or 0)
        return behind
    finally:
        await nc.close()


async def outbox_rows(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT " + " + ".join(f"(SELECT count(*) FROM {s}.outbox)" for s in SCHEMAS))


UNROUTED = ("SELECT count(*) FROM unnest($1::uuid[]) AS w(id)"
            " WHERE NOT EXISTS (SELECT 1 FROM routing.assignments a WHERE a.whistle_id = w.id)"
            " AND NOT EXISTS (SELECT 1 FROM routing.unroutable u WHERE u.whistle_id = w.id)")


async def snapshot(where: dict, ids: list[str]) -> dict:
    """Outbox rows, unrouted whistles and consumers behind; a part that cannot be read is None."""
    out: dict = {"outbox": None, "unrouted": None, "behind": None}
    async def read(conn: asyncpg.Connection) -> tuple[int, int]:
        return await outbox_rows(conn), await conn.fetchval(UNROUTED, ids)

    with contextlib.suppress(Exception):
        out["outbox"], out["unrouted"] = await query(where, read)
    with contextlib.suppress(Exception):
        out["behind"] = await consumers_behind(where, held_firings=False)
    return out


async def settle(where: dict, ids: list[str], timeout: float) -> tuple[bool, dict]:
    """Wait until outboxes are empty, consumers caught up and every whistle routed (twice in a row)."""
    started, calm, last_say = time.monotonic(), 0, 0.0
    state: dict = {}
    while time.monotonic() - started < timeout:
        state = await snapshot(where, ids)
        calm = calm + 1 if state["outbox"] == 0 and state["unrouted"] == 0 and state["behind"] == 0 else 0
        if calm >= 2:
            return True, state
        if time.monotonic() - last_say > 5:
            say(f"settling: {state}")
            last_say = time.monotonic()
        await asyncio.sleep(1.0)
    return False, state


async def clocks_done(where: dict, ids: list[str], timeout: float) -> float | None:
    """Seconds until no clock of these whistles runs (each went through its ladder) and the
    consumers have caught up with what they raised."""
    started, last_say = time.monotonic(), 0.0
    while time.monotonic() - started < timeout:
        running = None
        with contextlib.suppress(Exception):
            running = await query(where, lambda c: c.fetchval(
                "SELECT count(*) FROM escalation.clocks WHERE whistle_id = ANY($1::uuid[])"
                " AND state IN ('running', 'paused')", ids))
        behind = None
        if running == 0:
            with contextlib.suppress(Exception):
                behind = await consumers_behind(where)
            if behind == 0:
                return round(time.monotonic() - started, 1)
        if time.monotonic() - last_say > 5:
            say(f"clocks: {running} running, consumers behind {behind}")
            last_say = time.monotonic()
        await asyncio.sleep(1.0)
    return None


async def counts(conn: asyncpg.Connection, ids: list[str], run: str) -> dict:
    """Losses and duplicates, straight from each service's schema."""
    one = conn.fetchval
    out = {
        "lost": await one(UNROUTED, ids),
        "unroutable": await one("SELECT count(*) FROM routing.unroutable WHERE whistle_id = ANY($1::uuid[])", ids),
        "duplicate_whistles": await one(
            "SELECT coalesce(sum(n - 1), 0)::int FROM (SELECT count(*) AS n FROM intake.whistles"
            " WHERE description LIKE $1 GROUP BY description) AS d", f"chaos {run} %"),
        "duplicate_summons": await one(
            "SELECT coalesce(sum(n - 1), 0)::int FROM (SELECT count(*) AS n FROM routing.assignments"
            " WHERE whistle_id = ANY($1::uuid[]) AND role = 'lead' GROUP BY whistle_id) AS d", ids),
        "summons_without_clocks": await one(
            "SELECT count(*) FROM routing.assignments a WHERE a.whistle_id = ANY($1::uuid[])"
            " AND NOT EXISTS (SELECT 1 FROM escalation.clocks c WHERE c.summons_id = a.summons_id)", ids),
        "summons_not_in_response": await one(
            "SELECT count(*) FROM routing.assignments a WHERE a.whistle_id = ANY($1::uuid[])"
            " AND NOT EXISTS (SELECT 1 FROM response.summons s WHERE s.id = a.summons_id)", ids),
        "whistles_not_in_ledger": await one(
            "SELECT count(*) FROM unnest($1::uuid[]) AS w(id)"
            " WHERE NOT EXISTS (SELECT 1 FROM ledger.whistles l WHERE l.id = w.id)", ids),
        "outbox_rows_left": await outbox_rows(conn),
        # rows a relay set aside because JetStream refused them for good (shared migration 003)
        "outbox_set_aside": await one("SELECT " + " + ".join(
            f"(SELECT count(*) FROM {s}.outbox_dead)" for s in SCHEMAS)),
        "dead_letters": await one("SELECT count(*) FROM ledger.dead_letters"),
    }
    deadlines = {(r["summons_id"], r["kind"]): r["deadline"] for r in await conn.fetch(
        "SELECT summons_id::text AS summons_id, kind, deadline FROM escalation.clocks"
        " WHERE whistle_id = ANY($1::uuid[])", ids)}
    events = await conn.fetch(
        "SELECT subject, data->>'summons_id' AS summons_id, data->>'clock' AS clock, (data->>'step')::int AS step,"
        " (data->>'round')::int AS round, occurred_at FROM ledger.timeline"
        " WHERE whistle_id = ANY($1::uuid[]) AND subject IN ('sla.breached', 'escalation.raised')", ids)
    breaches = Counter((e["summons_id"], e["clock"]) for e in events if e["subject"] == "sla.breached")
    steps = Counter((e["summons_id"], e["clock"], e["step"], e["round"]) for e in events
                    if e["subject"] == "escalation.raised")
    early = 0
    for e in events:
        deadline = deadlines.get((e["summons_id"], e["clock"]))
        if deadline is None:
            continue
        due = deadline if e["subject"] == "sla.breached" else deadline + timedelta(seconds=STEP_AT[e["step"] - 1])
        early += e["occurred_at"] < due
    out.update(
        clocks_fired_twice=sum(1 for n in breaches.values() if n > 1),
        clocks_fired_early=early,
        escalations_twice=sum(1 for n in steps.values() if n > 1),
        clocks_never_fired=sum(1 for key in deadlines if key not in breaches),
    )
    return out


# --- the run ----------------------------------------------------------------------------------------------


async def chaos_run(args: argparse.Namespace, system: System) -> dict:
    where = system.where
    run = datetime.now().strftime("%H%M%S")
    rng = random.Random(args.seed)
    offered_s = args.n / args.rate
    window_s = max(offered_s, 2 * args.nats_pause_s + 10)
    load = Load(where, args.n, args.rate, args.give_up_s, run)
    chaos = Chaos(system.home, window_s, args.kill_every_s, args.nats_pause_s, rng)
    before = pids({"home": system.home})
    say(f"{args.n} whistles at {args.rate}/s ({offered_s:.0f} s); faults over {window_s:.0f} s")

    async def progress() -> None:
        while not load.done.is_set():
            await asyncio.sleep(5)
            say(f"t={chaos.t()}s accepted={len(load.accepted)}/{args.n} retries={load.retries} "
                f"statuses={dict(load.statuses)} errors={dict(load.errors)}")

    ticker = asyncio.create_task(progress())
    await asyncio.gather(load.drive(), chaos.run())
    ticker.cancel()
    ids = sorted(set(load.accepted.values()))
    say(f"faults over; {len(ids)} accepted, {load.gave_up} given up; settling")
    settled, state = await settle(where, ids, args.settle_timeout_s)
    # from the end of the faults: clients still retrying after it are part of settling
    settle_s = round(time.monotonic() - chaos.ended, 1) if settled else None
    say(f"settled after {settle_s} s" if settle_s is not None else f"not settled: {state}")
    done_s = await clocks_done(where, ids, args.clocks_timeout_s)
    out = {"n": args.n, "rate": args.rate, "accepted": len(ids)}
    out.update(await query(where, lambda c: counts(c, ids, run)))
    accept = sorted(load.accept_s)
    after = pids({"home": system.home})
    out.update(
        settle_s=settle_s, settled=settled, unsettled=None if settled else state,
        clocks_done_s=done_s,
        gave_up=load.gave_up, refused=load.refused, key_conflicts=load.key_conflicts, client_retries=load.retries,
        http_statuses={str(k): v for k, v in sorted(load.statuses.items())}, client_errors=dict(load.errors),
        accept_p50_s=r3(quantile(accept, 0.5)), accept_p99_s=r3(quantile(accept, 0.99)),
        accept_max_s=r3(accept[-1] if accept else None),
        offered_s=round(offered_s, 1), fault_window_s=round(window_s, 1),
        kills=len([k for k in chaos.kills if k["service"]]),
        kills_by_service=dict(Counter(k["service"] for k in chaos.kills if k["service"])),
        postgres_restarts=chaos.postgres_restarts, nats_pauses=chaos.nats_pauses,
        processes_replaced=sorted(k for k in before if after.get(k) != before[k]),
        healthz_ok=healthy(where), home=str(system.home),
    )
    return out


def main(args: argparse.Namespace) -> dict:
    home = Path(args.home).resolve() if args.home else Path(tempfile.mkdtemp(prefix="whistle-chaos-"))
    system = System(home)
    try:
        system.start()
        return asyncio.run(chaos_run(args, system))
    finally:
        say("stopping the system")
        system.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--whistles", dest="n", type=int, default=5000, help="whistles to blow (default 5000)")
    p.add_argument("--rate", type=float, default=50.0, help="whistles offered a second, open loop (default 50)")
    p.add_argument("--kill-every-s", type=float, default=5.0, help="kill -9 a random service this often (default 5)")
    p.add_argument("--nats-pause-s", type=float, default=30.0, help="how long nats-server is stopped (default 30)")
    p.add_argument("--give-up-s", type=float, default=300.0,
                   help="a client stops retrying a whistle this long after its first attempt (default 300)")
    p.add_argument("--settle-timeout-s", type=float, default=300.0, help="wait at most this long to settle (300)")
    p.add_argument("--clocks-timeout-s", type=float, default=240.0,
                   help="then wait at most this long for every clock to finish its ladder (240)")
    p.add_argument("--seed", type=int, default=None, help="seed of the random choice of services to kill")
    p.add_argument("--home", default=None, help="state directory, new or empty (default: a new temporary one)")
    args = p.parse_args(argv)
    if args.n < 1 or args.rate <= 0 or args.kill_every_s <= 0 or args.nats_pause_s < 0:
        p.error("need -n >= 1, --rate > 0, --kill-every-s > 0, --nats-pause-s >= 0")
    return args


LOSSES = ("lost", "duplicate_summons", "summons_without_clocks", "clocks_fired_twice", "clocks_fired_early",
          "escalations_twice", "outbox_rows_left", "outbox_set_aside", "dead_letters", "duplicate_whistles",
          "gave_up", "key_conflicts")

if __name__ == "__main__":
    arguments = parse_args()
    try:
        output = main(arguments)
    except NotUp as exc:
        print(f"bench/chaos.py: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    print(json.dumps(output), flush=True)
    sys.exit(0 if output["settled"] and not any(output.get(k) for k in LOSSES) else 1)
