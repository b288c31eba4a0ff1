"""SLA-clock benchmark: arm N clocks through the escalation service, let some fall due in one second,
then the same work with APScheduler 3 and its SQLAlchemy job store, on the same Postgres.

    python bench/timers.py [--n 100000] [--due 10000] [--apscheduler-n N] [--apscheduler-budget-s 300]
    python bench/timers.py --million          # 1,000,000 far-future clocks: memory, sizes, health

Runs from the repo root against a *fresh* system started with the bench's SLA policy:

    rm -rf .whistle-timers
    ESCALATION_POLICY_FILE=bench/timers_policy.json WHISTLE_HOME=.whistle-timers .venv/bin/whistle up --no-demo
    WHISTLE_HOME=.whistle-timers .venv/bin/python bench/timers.py

It finds the system like the other bench scripts: `$WHISTLE_HOME/credentials.json` (default
`.whistle/`) for the base URL and the dispatcher token (`WHISTLE_BASE` overrides the URL), NATS at
127.0.0.1:$WHISTLE_NATS_PORT (default 4250; `NATS_URL` / `--nats-url`), the embedded Postgres through
its Unix socket under `$WHISTLE_HOME/pg` (`DATABASE_URL` / `--database-url`), and the processes
through `$WHISTLE_HOME/pids.json`. The clocks it arms stay in the system: use a fresh WHISTLE_HOME.

The real path: the bench publishes `SummonsIssued` events (`model_dump_json`, `Nats-Msg-Id` =
event id), pipelined (the relay's own publisher), straight into JetStream on `summons.issued`. Escalation
consumes them, writes the clock and its outbox rows in one transaction, and its relay publishes
the schedule (`Nats-Schedule: @at …`) on `clock.timer.<clock_id>` in the CLOCKS stream. (Response
and the ledger consume the same events, as they do in production.) The policy gives each summons a
single report clock: `routine` 7 days (the N - due clocks that stay pending), `urgent` 1 hour; a
due summons' `occurred_at` is back-dated so that its deadline lands in [T, T + 1 s).

Phases:
 1. far:   N - due routine summons. A clock counts as armed when its schedule is stored: the
           CLOCKS stream's message count (one message per clock subject; a firing replaces the
           schedule with its clock.due message, so the count does not move) reaches baseline + N - due.
 2. quiet: wait until every consumer of the EVENTS stream (escalation, response, ledger) has caught
           up, so the due window is not measured against a backlog. Not counted in armed_per_s.
 3. due:   T = now + 5 s + 1.5 x (due / phase-1 rate); `due` urgent summons with deadlines
           T + i/due s, published, armed (counted as in 1), then each firing is timed: lateness =
           time.time() when its `sla.breached` event reaches a core subscription - its deadline.
           `nats_fire_lateness_*` is the same for the clock.due message the schedule stored (its
           stream timestamp, read after the window), i.e. the NATS part; it is negative when
           escalation has JetStream fire ahead of the deadline (ESCALATION_TIMER_LEAD_MS) and holds
           the firing until the deadline.
    armed_per_s = N / (duration of phase 1 + duration of phase 3's arming).
 4. APScheduler 3.11, BackgroundScheduler, SQLAlchemyJobStore (psycopg2) in table
    `bench_apscheduler_jobs` on the same Postgres (dropped at the end), 20 worker threads,
    misfire_grace_time None (never dropped), coalesce False. Jobs are added one by one to the
    running scheduler (each add is its own transaction, as the job store does it): far ones 7 days
    away, then `due` of them in [T2, T2 + 1 s) with T2 chosen as in 3; the job records
    time.time() - its run date. If adding everything would exceed `--apscheduler-budget-s`, it
    stops adding far jobs early (`apscheduler_truncated`, `apscheduler_n_armed`); the due ones are
    always added.

Also reported: RSS of nats-server (`server_rss_mb`) and escalation after arming, the size of
escalation.clocks, the CPU each process used per phase (`cpu_util_*`: CPU seconds / wall seconds,
1.0 = one core; `machine` is the whole machine and `others` what other processes used; `_due`: from
the first deadline to the last firing), and GET /healthz
after arming and at the end. Prints one JSON line on stdout; progress on stderr.
Exits 2 if the system is not up or runs another SLA policy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import nats  # noqa: E402
from nats.js.api import ConsumerConfig, DeliverPolicy  # noqa: E402
from nats.js.errors import NotFoundError  # noqa: E402
from pipeline import NotUp, connect_all, cpu_seconds, pids, quantile, wait_quiet  # noqa: E402  (bench/ is on the path: the script's folder)
from pipeline import locate as locate_system  # noqa: E402

from services.escalation.policy import parse_duration  # noqa: E402
from shared.contracts import ResponderKind, SummonsIssued, Tier  # noqa: E402
from shared.ids import uuid7  # noqa: E402
from shared.runtime.relay import PipelinedPublisher  # noqa: E402

EVENTS_STREAM = "EVENTS"
CLOCKS_STREAM = "CLOCKS"
FAR_TIER, DUE_TIER = Tier.routine, Tier.urgent
CATEGORY = "bench_timers"
ACTOR = "system:bench-timers"
APS_TABLE = "bench_apscheduler_jobs"
FAR_AWAY = timedelta(days=7)
START_CMD = ("ESCALATION_POLICY_FILE=bench/timers_policy.json WHISTLE_HOME=<fresh dir> "
             ".venv/bin/whistle up --no-demo")


def say(*parts: object) -> None:
    print("[timers]", *parts, file=sys.stderr, flush=True)


def r3(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def lateness_stats(values: list[float], prefix: str) -> dict:
    s = sorted(values)
    return {
        f"{prefix}p50_s": r3(quantile(s, 0.50)),
        f"{prefix}p99_s": r3(quantile(s, 0.99)),
        f"{prefix}max_s": r3(s[-1] if s else None),
    }


# --- finding the system ---------------------------------------------------------------------


def locate(args: argparse.Namespace) -> dict:
    """What bench/pipeline.py finds, plus the responders to summon."""
    try:
        where = locate_system(args)
    except NotUp as exc:
        raise NotUp(f"{exc} (for this bench: {START_CMD})") from None
    creds_path = where["home"] / "credentials.json"
    creds: dict = json.loads(creds_path.read_text()) if creds_path.exists() else {}
    summonable = {k.value for k in ResponderKind if k is not ResponderKind.command_centre}  # rungs are never summoned
    responders = [r for r in creds.get("responders", []) if r.get("kind") in summonable]
    return {**where, "responders": responders or [{"id": "m-bench", "kind": "member", "name": "Bench"}]}


def rss_mb(pid: int | None, field: str = "VmRSS") -> float | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class CpuWindow:
    """CPU used by each process between start() and stop(), as a share of one core."""

    def __init__(self, procs: dict[str, int]):
        self.procs = procs
        self.t0 = time.perf_counter()
        self.c0 = cpu_seconds(procs)

    def stop(self) -> dict[str, float]:
        wall = max(time.perf_counter() - self.t0, 1e-9)
        c1 = cpu_seconds(self.procs)
        util = {k: round((c1[k] - self.c0.get(k, 0.0)) / wall, 2) for k in c1 if k in self.c0}
        if "machine" in util:  # what processes other than these used (other engineers' work, say)
            util["others"] = round(max(util["machine"] - sum(v for k, v in util.items() if k != "machine"), 0.0), 2)
        return dict(sorted(util.items(), key=lambda kv: -kv[1]))


def check_policy(where: dict) -> timedelta:
    """The policy in force must be the bench's (or alike); returns the due tier's report budget."""
    try:
        r = httpx.get(f"{where['base']}/v1/policies", headers={"Authorization": f"Bearer {where['token']}"}, timeout=10)
    except httpx.HTTPError as exc:
        raise NotUp(f"{where['base']} does not answer ({exc!r}); start the system first: {START_CMD}") from None
    if r.status_code != 200:
        raise NotUp(f"GET /v1/policies answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    policies = body.get("data", body) if isinstance(body, dict) else body
    tiers = policies.get("tiers", {})
    problems = []
    for tier in (FAR_TIER, DUE_TIER):
        p = tiers.get(tier.value) or {}
        if p.get("basis") != "wall" or p.get("warn_at") is not None \
                or p.get("on_site_within") is not None or p.get("resolve_within") is not None:
            problems.append(f"{tier.value}: needs basis wall, warn_at null and only report_within")
    far = parse_duration(tiers.get(FAR_TIER.value, {}).get("report_within", 0))
    if far < timedelta(days=1):
        problems.append(f"{FAR_TIER.value}: report_within {far} < 1 day")
    due = parse_duration(tiers.get(DUE_TIER.value, {}).get("report_within", 0))
    if any(o.get("category") == CATEGORY for o in policies.get("overrides", [])):
        problems.append(f"an override for category {CATEGORY}")
    if problems:
        raise NotUp("the system does not run the bench policy (" + "; ".join(problems) +
                    f"): start it with {START_CMD}")
    return due


# --- publishing and counting -----------------------------------------------------------------


class Publisher:
    """SummonsIssued events into JetStream, pipelined (the relay's publisher: the load generator
    should not eat the CPU the system under test needs)."""

    def __init__(self, nc: nats.NATS, responders: list[dict]):
        self.pipe = PipelinedPublisher(nc)
        self.responders = responders
        self.published = 0

    @property
    def duplicates(self) -> int:
        return self.pipe.duplicates

    def event(self, i: int, tier: Tier, occurred_at: datetime) -> SummonsIssued:
        r = self.responders[i % len(self.responders)]
        return SummonsIssued(
            occurred_at=occurred_at, whistle_id=uuid7(), actor=ACTOR, summons_id=uuid7(),
            responder_id=r["id"], responder_kind=ResponderKind(r["kind"]), responder_name=r.get("name") or r["id"],
            category=CATEGORY, tier=tier,
        )

    async def publish(self, events) -> None:
        """`events` yields SummonsIssued; acks are awaited per chunk of 2,000."""
        chunk: list[tuple[str, bytes, dict[str, str]]] = []
        for e in events:
            chunk.append((e.published_subject, e.model_dump_json().encode(), {"Nats-Msg-Id": str(e.event_id)}))
            if len(chunk) >= 2_000:
                await self.pipe.publish(chunk, timeout=60)
                self.published += len(chunk)
                chunk = []
        if chunk:
            await self.pipe.publish(chunk, timeout=60)
            self.published += len(chunk)


async def clock_msgs(js) -> int:
    return (await js.stream_info(CLOCKS_STREAM)).state.messages


async def wait_armed(js, target: int, publisher: Publisher, label: str, stall_s: float) -> tuple[float, int]:
    """Poll the CLOCKS stream until it holds `target` messages; (perf_counter then, count)."""
    last_count, last_move, last_say = -1, time.perf_counter(), 0.0
    started = time.perf_counter()
    while True:
        count = await clock_msgs(js)
        now = time.perf_counter()
        if count >= target:
            return now, count
        if count != last_count:
            last_count, last_move = count, now
        elif now - last_move > stall_s:
            raise RuntimeError(f"{label}: CLOCKS stalled at {count}/{target} for {stall_s:.0f} s")
        if now - last_say >= 5.0:
            say(f"{label}: t={now - started:6.1f}s published={publisher.published} armed={count}/{target}")
            last_say = now
        await asyncio.sleep(0.1)


async def pg_sizes(db: asyncpg.Connection) -> dict:
    row = await db.fetchrow(
        "SELECT pg_total_relation_size('escalation.clocks') AS clocks, pg_database_size(current_database()) AS db,"
        " (SELECT count(*) FROM escalation.clocks WHERE state = 'running' AND fire_at IS NOT NULL) AS pending"
    )
    return {"pg_clocks_mb": round(row["clocks"] / 2**20, 1), "pg_database_mb": round(row["db"] / 2**20, 1),
            "pending_clocks": row["pending"]}


def healthy(where: dict) -> bool:
    try:
        return httpx.get(f"{where['base']}/healthz", timeout=10.0).status_code == 200
    except httpx.HTTPError:
        return False


# --- the Whistle run ----------------------------------------------------------------------------


class DueWatch:
    """Core subscription on sla.breached during the window (each message only timed and kept, parsed
    afterwards), then, after the window, the clock.due messages' stream timestamps for the NATS part,
    so the bench takes as little CPU as it can from the system while it is measured."""

    def __init__(self, nc: nats.NATS, due_summons: set[str]):
        self.nc, self.due_summons = nc, due_summons
        self.received: list[tuple[float, bytes]] = []
        self.breached: dict[str, tuple[float, float]] = {}  # summons id -> (received, deadline) epoch s
        self.subs: list = []

    async def on_breach(self, msg) -> None:
        self.received.append((time.time(), msg.data))

    def seen(self) -> int:
        """Breaches of the due summons seen so far (parses what came since the last call)."""
        for received, data in self.received:
            try:
                body = json.loads(data)
                summons = body["summons_id"]
                deadline = datetime.fromisoformat(body["deadline"]).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if summons in self.due_summons and summons not in self.breached:
                self.breached[summons] = (received, deadline)
        self.received = []
        return len(self.breached)

    async def start(self) -> None:
        self.subs.append(await self.nc.subscribe("sla.breached.>", cb=self.on_breach,
                                                 pending_msgs_limit=-1, pending_bytes_limit=-1))
        await self.nc.flush()

    async def stop(self) -> None:
        for sub in self.subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def stored(self, since: datetime) -> dict[str, float]:
        """clock id -> stream timestamp of its clock.due message (each bench clock fires once)."""
        out: dict[str, float] = {}
        sub = await self.nc.jetstream().subscribe(
            "clock.due.>", stream=CLOCKS_STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.BY_START_TIME,
            config=ConsumerConfig(opt_start_time=since), pending_msgs_limit=-1, pending_bytes_limit=-1)
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=2.0)
                except nats.errors.TimeoutError:
                    return out
                out.setdefault(msg.subject.rsplit(".", 1)[-1], msg.metadata.timestamp.timestamp())
        finally:
            await sub.unsubscribe()


async def whistle_run(args: argparse.Namespace, where: dict, nc: nats.NATS, db: asyncpg.Connection,
                      due_budget: timedelta) -> dict:
    js = nc.jetstream()
    procs = pids(where)
    before_pids = dict(procs)
    base = await clock_msgs(js)
    far_n, due_n = args.n - args.due, args.due
    pub = Publisher(nc, where["responders"])
    out: dict = {"n": args.n, "due": due_n}
    stall = args.stall_s
    say(f"NATS {where['nats_url']}, CLOCKS holds {base}; arming {far_n} far clocks, then {due_n} due in one second")

    # 1. far clocks
    cpu = CpuWindow(procs)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    # deadlines spread over the day before now + 7 days
    task = asyncio.create_task(pub.publish(
        pub.event(i, FAR_TIER, now - timedelta(seconds=i % 86_400)) for i in range(far_n)))
    t_far, _ = await wait_armed(js, base + far_n, pub, "far", stall)
    await task
    far_s = t_far - t0
    out["cpu_util_arm"] = cpu.stop()
    out["far_armed_per_s"] = round(far_n / far_s, 1) if far_n else None
    say(f"far: {far_n} armed in {far_s:.1f} s ({out['far_armed_per_s']}/s); cpu {out['cpu_util_arm']}")
    out["server_rss_mb"] = rss_mb(procs.get("nats"))
    out["escalation_rss_mb"] = rss_mb(procs.get("escalation"))
    out["healthz_ok_after_arm"] = healthy(where)

    # 2. quiet
    tq = time.perf_counter()
    out["consumers_caught_up"] = await wait_quiet(js, args.quiet_timeout_s)
    quiet_s = time.perf_counter() - t0
    out["catch_up_wait_s"] = round(time.perf_counter() - tq, 1)
    if not out["consumers_caught_up"]:
        say(f"quiet: consumers still behind after {args.quiet_timeout_s:.0f} s; going on")

    # 3. due clocks
    due_s = 0.0
    if due_n:
        rate = far_n / quiet_s if far_n else 500.0
        lead = 5.0 + 1.5 * due_n / rate
        window_start = time.time() + lead
        out["due_lead_s"] = round(lead, 1)
        first_deadline = datetime.fromtimestamp(window_start, UTC)
        events = [pub.event(i, DUE_TIER, first_deadline - due_budget + timedelta(seconds=i / due_n))
                  for i in range(due_n)]
        watch = DueWatch(nc, {str(e.summons_id) for e in events})
        await watch.start()
        t1 = time.perf_counter()
        await pub.publish(iter(events))
        t_due, _ = await wait_armed(js, base + args.n, pub, "due", stall)
        due_s = t_due - t1
        armed_wall = time.time()
        out["due_armed_per_s"] = round(due_n / due_s, 1)
        out["due_armed_ahead_s"] = round(window_start - armed_wall, 2)  # < 0: some armed after their deadline
        say(f"due: {due_n} armed in {due_s:.1f} s, {window_start - armed_wall:.1f} s before the window")
        await asyncio.sleep(max(window_start - time.time(), 0.0))
        cpu = CpuWindow(procs)  # from the first deadline to the last firing
        give_up = window_start + 1.0 + args.fire_timeout_s
        last_say = 0.0
        while watch.seen() < due_n and time.time() < give_up:
            if time.time() - last_say > 5:
                say(f"due: breaches seen {len(watch.breached)}/{due_n}, window at {window_start - time.time():+.1f} s")
                last_say = time.time()
            await asyncio.sleep(0.05)
        out["cpu_util_due"] = cpu.stop()
        await asyncio.sleep(0.5)
        await watch.stop()
        watch.seen()
        lateness = [received - deadline for received, deadline in watch.breached.values()]
        out.update(lateness_stats(lateness, "lateness_"))
        out["fired"] = len(lateness)
        out["missing"] = due_n - len(lateness)
        deadlines = {r["id"]: r["deadline"].timestamp() for r in await db.fetch(
            "SELECT id::text AS id, deadline FROM escalation.clocks WHERE summons_id = ANY($1::uuid[])",
            list(watch.due_summons))}
        stored = await watch.stored(datetime.fromtimestamp(window_start - 60, UTC))
        nats_late = [ts - deadlines[c] for c, ts in stored.items() if c in deadlines]
        out.update(lateness_stats(nats_late, "nats_fire_lateness_"))
        say(f"due: {len(lateness)} fired, p50 {out['lateness_p50_s']} s, p99 {out['lateness_p99_s']} s; "
            f"NATS part p99 {out['nats_fire_lateness_p99_s']} s; cpu {out['cpu_util_due']}")

    out["armed_per_s"] = round(args.n / (far_s + due_s), 1)
    out["arm_s"] = round(far_s + due_s, 1)
    out["published"] = pub.published
    out["publish_duplicates"] = pub.duplicates
    out["clocks_stream_msgs"] = await clock_msgs(js)
    info = await js.stream_info(CLOCKS_STREAM)
    out["clocks_stream_mb"] = round(info.state.bytes / 2**20, 1)
    out["server_rss_peak_mb"] = rss_mb(procs.get("nats"), "VmHWM")
    out["escalation_rss_peak_mb"] = rss_mb(procs.get("escalation"), "VmHWM")
    out.update(await pg_sizes(db))
    after = pids(where)
    out["services_restarted"] = sorted(k for k in before_pids if after.get(k) != before_pids[k])
    return out


# --- APScheduler --------------------------------------------------------------------------------

_APS_LATE: list[float] = []
_APS_LOCK = threading.Lock()


def aps_fire(run_at: float) -> None:
    """The APScheduler job: how late it runs."""
    late = time.time() - run_at
    with _APS_LOCK:
        _APS_LATE.append(late)


def sqlalchemy_url(dsn: str) -> str:
    """The asyncpg DSN as a SQLAlchemy psycopg2 URL (the socket folder and port as query params)."""
    parts = urlsplit(dsn)
    return "postgresql+psycopg2://" + dsn.split("://", 1)[1] if parts.scheme.startswith("postgres") else dsn


def apscheduler_run(args: argparse.Namespace, where: dict) -> dict:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger
    from sqlalchemy import create_engine, text

    url = sqlalchemy_url(where["dsn"])
    admin = create_engine(url)
    with admin.begin() as c:
        c.execute(text(f"DROP TABLE IF EXISTS {APS_TABLE}"))
    store = SQLAlchemyJobStore(url=url, tablename=APS_TABLE)
    scheduler = BackgroundScheduler(
        jobstores={"default": store}, executors={"default": ThreadPoolExecutor(20)},
        job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 1}, timezone=UTC,
    )
    procs = pids(where)
    total = args.apscheduler_n
    due_n = min(args.due, total)
    far_target = total - due_n
    budget = args.apscheduler_budget_s
    out: dict = {}
    scheduler.start()
    try:
        say(f"APScheduler: adding up to {far_target} far jobs, then {due_n} due ones (budget {budget:.0f} s)")
        cpu = CpuWindow(procs)
        far_at = datetime.now(UTC) + FAR_AWAY
        t0 = time.perf_counter()
        added = 0
        last_say = t0
        truncated = False
        while added < far_target:
            scheduler.add_job(aps_fire, DateTrigger(run_date=far_at, timezone=UTC), args=[far_at.timestamp()],
                              id=f"far-{added}")
            added += 1
            now = time.perf_counter()
            if added % 200 == 0:
                per = (now - t0) / added
                if now - t0 + per * due_n * 1.2 > budget:
                    truncated = True
                    break
                if now - last_say >= 10:
                    say(f"APScheduler: {added}/{far_target} far jobs, {added / (now - t0):.0f}/s")
                    last_say = now
        far_s = time.perf_counter() - t0
        per = far_s / added if added else 0.005
        lead = 5.0 + 1.5 * due_n * per
        window_start = time.time() + lead
        t1 = time.perf_counter()
        for i in range(due_n):
            run_at = window_start + i / due_n
            scheduler.add_job(aps_fire, DateTrigger(run_date=datetime.fromtimestamp(run_at, UTC), timezone=UTC),
                              args=[run_at], id=f"due-{i}")
        due_s = time.perf_counter() - t1
        out["cpu_util_apscheduler_arm"] = cpu.stop()
        n_armed = added + due_n
        out["apscheduler_armed_per_s"] = round(n_armed / (far_s + due_s), 1)
        out["apscheduler_n_armed"] = n_armed
        out["apscheduler_n_requested"] = total
        out["apscheduler_truncated"] = truncated
        if truncated:
            out["apscheduler_note"] = (f"stopped adding far jobs at the {budget:.0f} s budget: "
                                       f"rate and lateness are over {n_armed} of {total} jobs")
        out["apscheduler_due_armed_ahead_s"] = round(window_start - time.time(), 2)
        say(f"APScheduler: {n_armed} jobs added in {far_s + due_s:.1f} s ({out['apscheduler_armed_per_s']}/s)"
            f"{' (stopped early: budget)' if truncated else ''}; window in {window_start - time.time():.1f} s")
        time.sleep(max(window_start - time.time(), 0.0))
        cpu = CpuWindow(procs)  # from the first run date to the last run
        give_up = window_start + 1.0 + args.fire_timeout_s
        last_say = 0.0
        while len(_APS_LATE) < due_n and time.time() < give_up:
            if time.time() - last_say > 5:
                say(f"APScheduler: {len(_APS_LATE)}/{due_n} jobs ran, window at {window_start - time.time():+.1f} s")
                last_say = time.time()
            time.sleep(0.05)
        out["cpu_util_apscheduler_due"] = cpu.stop()
        with _APS_LOCK:
            late = list(_APS_LATE)
        out.update(lateness_stats(late, "apscheduler_lateness_"))
        out["apscheduler_missing"] = due_n - len(late)
        with admin.connect() as c:
            out["apscheduler_table_mb"] = round(
                c.execute(text(f"SELECT pg_total_relation_size('{APS_TABLE}')")).scalar() / 2**20, 1)
        say(f"APScheduler: {len(late)} ran, p50 {out['apscheduler_lateness_p50_s']} s, "
            f"p99 {out['apscheduler_lateness_p99_s']} s")
    finally:
        with contextlib.suppress(Exception):
            scheduler.shutdown(wait=False)
        with admin.begin() as c:
            c.execute(text(f"DROP TABLE IF EXISTS {APS_TABLE}"))
        admin.dispose()
    return out


# --- main -----------------------------------------------------------------------------------------


async def whistle_part(args: argparse.Namespace, where: dict, due_budget: timedelta) -> dict:
    nc, db = await connect_all(where)
    try:
        try:
            await nc.jetstream().stream_info(CLOCKS_STREAM)
        except NotFoundError:
            raise NotUp(f"no {CLOCKS_STREAM} stream on {where['nats_url']}: is that the system's NATS?") from None
        return await whistle_run(args, where, nc, db, due_budget)
    finally:
        await db.close()
        with contextlib.suppress(Exception):
            await nc.close()


def main(args: argparse.Namespace) -> dict:
    where = locate(args)
    due_budget = check_policy(where)
    result: dict = {"mode": "million" if args.million else "default",
                    "load_avg_1m_start": round(os.getloadavg()[0], 2)}
    result.update(asyncio.run(whistle_part(args, where, due_budget)))
    if args.apscheduler_n > 0:
        result.update(apscheduler_run(args, where))
        if result.get("apscheduler_armed_per_s"):
            result["armed_ratio_vs_apscheduler"] = round(result["armed_per_s"] / result["apscheduler_armed_per_s"], 1)
    result["healthz_ok"] = healthy(where)
    result["bench_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=None, help="clocks to arm (default 100000; 1000000 with --million)")
    p.add_argument("--due", type=int, default=None,
                   help="of which fall due within one second (default 10000; 0 with --million)")
    p.add_argument("--million", action="store_true",
                   help="arm 1,000,000 far-future clocks; report memory, sizes and health (no APScheduler)")
    p.add_argument("--apscheduler-n", type=int, default=None,
                   help="jobs for the APScheduler comparison (default: N; 0 skips; skipped with --million)")
    p.add_argument("--apscheduler-budget-s", type=float, default=300.0,
                   help="stop adding far APScheduler jobs when adding all would exceed this (default 300)")
    p.add_argument("--fire-timeout-s", type=float, default=180.0,
                   help="wait this long after the due window for the last firing (default 180)")
    p.add_argument("--quiet-timeout-s", type=float, default=None,
                   help="wait at most this long for the consumers to catch up before the window (default 300 + N/500)")
    p.add_argument("--stall-s", type=float, default=180.0,
                   help="give up when the CLOCKS stream has not grown for this long (default 180)")
    p.add_argument("--nats-url", default=None, help="NATS URL (default NATS_URL or nats://127.0.0.1:$WHISTLE_NATS_PORT)")
    p.add_argument("--database-url", default=None, help="Postgres DSN (default DATABASE_URL or the embedded one)")
    args = p.parse_args(argv)
    if args.n is None:
        args.n = 1_000_000 if args.million else 100_000
    if args.due is None:
        args.due = 0 if args.million else min(10_000, args.n)
    if args.apscheduler_n is None:
        args.apscheduler_n = 0 if args.million else args.n
    if args.quiet_timeout_s is None:
        args.quiet_timeout_s = 300.0 + args.n / 500
    if args.n < 1 or not 0 <= args.due <= args.n or args.apscheduler_n < 0:
        p.error("need N >= 1 and 0 <= due <= N, apscheduler-n >= 0")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    try:
        output = main(arguments)
    except NotUp as exc:
        print(f"bench/timers.py: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    print(json.dumps(output), flush=True)
    sys.exit(0 if output.get("missing", 0) == 0 and output.get("healthz_ok") else 1)
