"""`whistle up`: embedded servers, migrations and streams, every service as its own supervised process."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats
import nats.errors
import structlog

from services.cli import demo, keys, nats_conf
from services.cli.console_accounts import set_demo_passwords
from services.cli.embedded import CLUSTER_NAME, EmbeddedPostgres, start_nats
from services.cli.settings import RunnerSettings
from shared import auth, log_erasure, nats_auth, priority, signing
from shared.services import NAMES
from shared.settings import nats_servers
from shared.streams import ensure_streams

log = structlog.get_logger("runner")
# Postgres's vacuum and analyze of the tables the services churn: measured here, a round over six
# tables ran through the 10,000-clock window of bench/timers.py: Postgres took 0.89 of the two cores
# there (0.64 in a run without), the firings' lateness p99 was 1.4 s. Upkeep can wait; clocks cannot
AUTOVACUUM_WORKER = b"postgres: autovacuum worker"
SERVICES = NAMES
CLUSTER_NODES = 3  # `whistle up --cluster`: a raft majority survives one node down


def _die_with_parent() -> None:
    """Children get SIGTERM if the runner dies, even by kill -9: no orphans (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Backoff:
    """When to restart a crashed process: 1 s after, doubling to 30 s, back to 1 s after 60 s up."""

    delay: float = 1.0
    due: float = 0.0  # when the next start is due; 0.0 while up
    up_since: float = 0.0
    restarts: int = 0

    def up(self, now: float) -> None:
        """Seen running (restarted by someone else, maybe)."""
        if self.due:
            self.due, self.up_since = 0.0, now
        elif now - self.up_since > 60:
            self.delay = 1.0

    def crashed(self, now: float) -> None:
        """Seen down: the next start is due after the current delay."""
        self.due = now + self.delay

    def started(self, now: float) -> None:
        """Restarted: the next crash waits twice as long."""
        self.restarts += 1
        self.due, self.up_since = 0.0, now
        self.delay = min(self.delay * 2, 30.0)

    def failed(self, now: float) -> None:
        """A start that did not come up: try again after twice the delay."""
        self.delay = min(self.delay * 2, 30.0)
        self.due = now + self.delay


@dataclass
class Child:
    name: str  # its key in pids.json and its log file: the service, then "-2", "-3"… for more replicas
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    backoff: Backoff = field(default_factory=Backoff)
    service: str = ""  # the service it runs (its name when empty)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.service or self.name}"],
            env=self.env, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent, start_new_session=True,
        )


@dataclass
class NatsNode:
    """An embedded nats-server: the single one ("nats"), or a node of the local cluster ("nats-1".."nats-3")."""

    name: str  # its key in pids.json, its store dir and log file
    port: int
    cluster_port: int = 0  # 0: not clustered
    routes: tuple[int, ...] = ()  # the other nodes' route ports
    proc: subprocess.Popen | None = None
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


def nats_nodes(settings: RunnerSettings) -> list[NatsNode]:
    """One node on `nats_port`, or (cluster) three on it and the next two ports, routed to one another."""
    if not settings.cluster:
        return [NatsNode("nats", settings.nats_port)]
    routes = [settings.nats_cluster_port + i for i in range(CLUSTER_NODES)]
    return [NatsNode(f"nats-{i + 1}", settings.nats_port + i, routes[i], tuple(r for r in routes if r != routes[i]))
            for i in range(CLUSTER_NODES)]


@dataclass
class Runner:
    settings: RunnerSettings
    children: dict[str, Child] = field(default_factory=dict)
    nodes: list[NatsNode] = field(default_factory=list)  # the embedded servers started here; none for a NATS_URL
    postgres: EmbeddedPostgres | None = None
    postgres_pid: int | None = None  # the postmaster last seen running: pids.json's "postgres"
    postgres_backoff: Backoff = field(default_factory=Backoff)
    stopping: bool = False
    nats_users: dict[str, str] = field(default_factory=dict)  # user -> password, when the embedded NATS authenticates
    nats_permissions: dict[str, dict] = field(default_factory=dict)  # user -> what it may publish and subscribe
    nats_plain_url: str = ""  # the embedded servers, without credentials

    @property
    def home(self) -> Path:
        return self.settings.home.resolve()

    def secret(self) -> str:
        """WHISTLE_AUTH_SECRET: as given, else `<home>/secret` (made once, 0600); SecretError if short."""
        return keys.auth_secret(self.home, self.settings.auth_secret)

    def signing_keys(self) -> str:
        """WHISTLE_SIGNING_KEYS: as given, else `<home>/signing_keys` (made once, 0600; `whistle rotate-key`)."""
        return keys.signing_keys(self.home, self.settings.signing_keys)

    def command_keys(self) -> dict[str, str]:
        """Each signer's private key: the gateway, every service that asks another (shared/nats_auth.py's
        ASKS) and the runner; made once into `<home>/command-keys.json` (0600)."""
        return keys.command_keys(self.home, [signing.GATEWAY, *nats_auth.ASKS, signing.RUNNER])

    def signer(self) -> signing.Signer:
        """The runner's own signer (the demo's passwords, as the system)."""
        return signing.Signer.parse(f"{signing.RUNNER}:{self.command_keys()[signing.RUNNER]}")

    def export_secrets(self) -> None:
        """The secrets into this process's environment (the runner builds the services here too, to migrate
        them, and their settings refuse to start without); each child is given only its own command keys."""
        os.environ["WHISTLE_AUTH_SECRET"] = self.secret()
        os.environ["WHISTLE_SIGNING_KEYS"] = self.signing_keys()
        os.environ["WHISTLE_COMMAND_VERIFY_KEYS"] = keys.verify_keys(self.command_keys(), SERVICES)

    @property
    def replicas(self) -> int:
        """Replicas of every stream: one per node of the embedded cluster, else WHISTLE_STREAM_REPLICAS."""
        return len(self.nodes) if len(self.nodes) > 1 else self.settings.stream_replicas

    def start_infrastructure(self) -> tuple[str, str]:
        """NATS_URL and DATABASE_URL: the given ones, or embedded servers started here (NATS_URL then
        lists every node of the embedded cluster, comma-separated)."""
        nats_url = os.environ.get("NATS_URL")
        if not nats_url:
            if self.settings.nats_auth:
                self.prepare_nats_auth()
            self.nodes = nats_nodes(self.settings)
            for node in self.nodes:
                node.proc = self.start_nats(node)
                log.info("nats.started", node=node.name, url=node.url, pid=node.proc.pid, users=len(self.nats_users))
            nats_url = self.nats_plain_url = ",".join(node.url for node in self.nodes)
            if self.nats_users:  # the runner itself declares the streams: the admin
                nats_url = nats_auth.with_user(nats_url, nats_auth.ADMIN, self.nats_users[nats_auth.ADMIN])
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            self.postgres = EmbeddedPostgres(self.home)
            self.postgres_pid = self.postgres.pid
            database_url = self.postgres.uri
            log.info("postgres.started", url=keys.redacted(database_url), pid=self.postgres_pid)
        return nats_url, database_url

    def start_nats(self, node: NatsNode) -> subprocess.Popen:
        """An embedded nats-server, dying with the runner; RuntimeError if it does not listen."""
        return start_nats(self.home, node.port, self.home / "logs" / f"{node.name}.log", _die_with_parent,
                          node=node.name if node.cluster_port else None, cluster_port=node.cluster_port,
                          routes=node.routes, config=self.nats_config(node))

    def prepare_nats_auth(self) -> None:
        """A NATS user per service (its password kept in `nats-users.json`, 0600), each allowed what its
        own declarations say it publishes and answers (shared/nats_auth.py); the admin for the runner."""
        self.nats_permissions = nats_conf.declared_permissions(self.settings.partitions)  # as docker-compose's nats-config job does
        self.nats_users = nats_auth.passwords(self.home / "nats-users.json", nats_conf.users_of(self.nats_permissions))

    def nats_config(self, node: NatsNode) -> Path | None:
        """The node's configuration file (users, permissions, authenticated routes); None without auth."""
        if not self.nats_users:
            return None
        cluster = {"name": CLUSTER_NAME, "port": node.cluster_port, "routes": node.routes} if node.cluster_port else None
        path = self.home / f"{node.name}.conf"
        nats_auth.write_private(path, nats_auth.server_config(self.nats_users, self.nats_permissions, cluster=cluster))
        return path

    def nats_url_of(self, user: str, nats_url: str) -> str:
        """What `user` connects with: its own credentials on the embedded servers, else the URL given."""
        if not self.nats_users:
            return nats_url
        return nats_auth.with_user(self.nats_plain_url, user, self.nats_users[user])

    async def declare_streams(self, nats_url: str, timeout: float = 60.0) -> None:
        """Every stream with the runner's replicas; retried while a new cluster elects its meta leader."""
        nc = await nats.connect(nats_servers(nats_url), name="runner")
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    await ensure_streams(nc.jetstream(), self.replicas, self.settings.partitions,
                                         self.settings.reporter_retention_days)
                    return
                except nats.errors.Error as exc:
                    if time.monotonic() > deadline:
                        raise
                    log.info("streams.waiting", reason=repr(exc))
                    await asyncio.sleep(0.5)
        finally:
            await nc.close()

    async def declare_and_migrate(self, nats_url: str, database_url: str) -> None:
        """Streams first, then each service's migrations, before any service starts."""
        await self.declare_streams(nats_url)
        from services.escalation.app import build as escalation
        from services.intake.app import build as intake
        from services.ledger.app import build as ledger
        from services.notifier.app import build as notifier
        from services.response.app import build as response
        from services.routing.app import build as routing
        from shared.db import create_pool, migrate

        for build in (intake, routing, response, escalation, ledger, notifier):
            runtime = build()
            pool = await create_pool(database_url, runtime.name, max_size=1)
            try:
                await migrate(pool, runtime.migrations)
            finally:
                await pool.close()

    def spawn_all(self, nats_url: str, database_url: str) -> None:
        base = dict(os.environ, NATS_URL=nats_url, DATABASE_URL=database_url, WHISTLE_AUTH_SECRET=self.secret(),
                    WHISTLE_SIGNING_KEYS=self.signing_keys(),
                    WHISTLE_STREAM_REPLICAS=str(self.replicas),  # services declare the streams too: never fewer
                    WHISTLE_PARTITIONS=str(self.settings.partitions))
        base.setdefault("PYTHONUNBUFFERED", "1")
        signers = self.command_keys()
        for k in range(1, self.settings.replicas + 1):
            for i, name in enumerate(SERVICES):
                key = name if k == 1 else f"{name}-{k}"
                env = dict(base)
                prefix = name.upper()
                if name == "gateway":  # the replicas share the port: the kernel spreads the connections
                    env.update(GATEWAY_PORT=str(self.settings.port), GATEWAY_HOST=self.settings.host,
                               GATEWAY_REUSE_PORT=str(self.settings.replicas > 1).lower())
                else:
                    port = self.settings.telemetry_base_port + i + (k - 1) * len(SERVICES)
                    env[f"{prefix}_TELEMETRY_PORT"] = str(port)
                # its own secret if it signs (and no other's), and only the signers' keys meant for itself
                for variable in ("WHISTLE_COMMAND_KEY", "WHISTLE_COMMAND_KEY_FILE", "WHISTLE_COMMAND_VERIFY_KEYS_FILE"):
                    env.pop(variable, None)
                if name in signers and name != signing.RUNNER:
                    env["WHISTLE_COMMAND_KEY"] = f"{name}:{signers[name]}"
                env["WHISTLE_COMMAND_VERIFY_KEYS"] = keys.verify_keys(signers, [name])
                env["WHISTLE_REPLICA"] = f"{name}-{k}"  # the same after a restart: its partitions wait for it
                env["NATS_URL"] = self.nats_url_of(name, nats_url)
                if self.nats_users:  # the runner declared the streams; a service may not
                    env["WHISTLE_DECLARE_STREAMS"] = "false"
                child = Child(key, env, self.home / "logs" / f"{key}.log", service=name)
                child.start()
                self.children[key] = child
                log.info("service.started", service=key, pid=child.proc.pid)
        self.write_pids()

    def write_pids(self) -> None:
        pids = {n: c.proc.pid for n, c in self.children.items() if c.proc}
        pids.update({node.name: node.proc.pid for node in self.nodes if node.proc})
        if self.postgres_pid:
            pids["postgres"] = self.postgres_pid
        # written whole then renamed: a reader (tests, the timers bench) never sees a half-written file
        part = self.home / "pids.json.part"
        part.write_text(json.dumps(pids))
        part.replace(self.home / "pids.json")

    def supervise_once(self) -> None:
        """Restart a crashed service or embedded server with backoff, adopt a postmaster started by hand, and log it."""
        now = time.monotonic()
        changed = False
        if not self.stopping:
            for node in self.nodes:
                changed |= self.supervise_nats(node, now)
        if self.postgres and not self.stopping:
            changed |= self.supervise_postgres(now)
        for child in self.children.values():
            code = child.proc.poll() if child.proc else 0
            if code is None:
                child.backoff.up(now)
                continue
            if not child.backoff.due:
                child.backoff.crashed(now)
                log.warning("service.crashed", service=child.name, exit_code=code, restart_in_s=child.backoff.delay)
                continue
            if now >= child.backoff.due:
                child.start()
                child.backoff.started(now)
                changed = True
                log.warning("service.restarted", service=child.name, pid=child.proc.pid, restarts=child.backoff.restarts)
        if changed:
            self.write_pids()
        if self.postgres_pid and self.settings.maintenance_nice:
            priority.lower_children(self.postgres_pid, AUTOVACUUM_WORKER, self.settings.maintenance_nice)

    def supervise_nats(self, node: NatsNode, now: float) -> bool:
        """Restart an embedded nats-server once its backoff has passed; True if its pid changed."""
        backoff = node.backoff
        code = node.proc.poll()
        if code is None:
            backoff.up(now)
            return False
        if not backoff.due:
            backoff.crashed(now)
            log.warning("nats.crashed", node=node.name, pid=node.proc.pid, exit_code=code, restart_in_s=backoff.delay)
            return False
        if now < backoff.due:
            return False
        try:
            node.proc = self.start_nats(node)
        except RuntimeError as exc:
            backoff.failed(time.monotonic())
            log.warning("nats.restart_failed", node=node.name, reason=str(exc), restart_in_s=backoff.delay)
            return False
        backoff.started(time.monotonic())
        log.warning("nats.restarted", node=node.name, pid=node.proc.pid, restarts=backoff.restarts)
        return True

    def supervise_postgres(self, now: float) -> bool:
        """Restart a dead postmaster once its backoff has passed, or adopt one started by someone else
        on the data dir (never a second one); True if its pid changed."""
        backoff = self.postgres_backoff
        pid = self.postgres.pid
        if pid:
            backoff.up(now)
            if pid == self.postgres_pid:
                return False
            log.warning("postgres.adopted", pid=pid, previous_pid=self.postgres_pid)
            self.postgres_pid = pid
            return True
        if not backoff.due:
            backoff.crashed(now)
            log.warning("postgres.crashed", pid=self.postgres_pid, restart_in_s=backoff.delay)
            return False
        if now < backoff.due:
            return False
        try:
            self.postgres_pid = self.postgres.start()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            # after a kill -9 a new postmaster is refused while the old one's backends still hold its
            # shared memory, or while its pid (a zombie until reaped) still holds postmaster.pid
            backoff.failed(time.monotonic())
            log.warning("postgres.restart_failed", reason=str(exc), restart_in_s=backoff.delay)
            return False
        backoff.started(time.monotonic())
        log.warning("postgres.restarted", pid=self.postgres_pid, restarts=backoff.restarts)
        return True

    def stop_all(self) -> None:
        """SIGTERM every service, wait, then SIGKILL stragglers; stop the embedded servers, whatever their pids now."""
        self.stopping = True
        for child in self.children.values():
            if child.proc and child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + 15
        for child in self.children.values():
            if child.proc:
                try:
                    child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait()
        running = [node.proc for node in self.nodes if node.proc and node.proc.poll() is None]
        for proc in running:
            proc.terminate()
        for proc in running:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.postgres:
            self.postgres.stop()
        (self.home / "pids.json").unlink(missing_ok=True)
        log.info("stopped")

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self.supervise_once()
            try:
                r = httpx.get(f"{self.settings.base_url}/healthz", timeout=2.0)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.3)
        raise RuntimeError(f"services not ready after {timeout}s: {last}; logs in {self.home / 'logs'}")

    def credentials(self) -> dict:
        from services.routing.registry import load_registry
        from services.routing.settings import RoutingSettings

        ring = auth.KeyRing.parse(self.signing_keys())
        registry = load_registry(RoutingSettings().registry_file)
        ttl = self.settings.token_ttl_s

        def token(role: str, subject: str) -> str:
            return auth.mint(ring, role, subject, ttl_s=ttl)

        return {
            "base_url": self.settings.base_url,
            # fresh tokens each start, signed with the first key, expiring after WHISTLE_TOKEN_TTL_S
            "tokens": {"kid": ring.kid, "expire_in_s": ttl},
            "dispatcher": {"id": "community-7", "token": token("dispatcher", "community-7")},
            "supervisor": {"id": "xingcheng-street", "token": token("supervisor", "xingcheng-street")},
            "responders": [
                {"id": r.id, "kind": r.kind.value, "name": r.name_en, "name_zh": r.name_zh,
                 "token": token("responder", r.id)}
                for r in registry.values()
            ],
        }


def run(settings: RunnerSettings) -> None:
    """Bring the whole system up and keep it up until Ctrl-C / SIGTERM."""
    runner = Runner(settings)
    runner.home.mkdir(parents=True, exist_ok=True)
    (runner.home / "logs").mkdir(exist_ok=True)
    try:
        runner.export_secrets()
    except auth.SecretError as exc:  # a short WHISTLE_AUTH_SECRET or WHISTLE_SIGNING_KEYS given: never used
        print(f"whistle up refuses to start / 拒绝启动: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    # explicit for both: a shell starting us in the background leaves SIGINT ignored
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        nats_url, database_url = runner.start_infrastructure()
        asyncio.run(runner.declare_and_migrate(nats_url, database_url))
        # the admin, which declared the streams, deletes an erased reporter's whistle.blown from them
        log_erasure.in_thread(nats_url, settings.partitions, nats_conf.declared_takers(settings.partitions))
        runner.spawn_all(nats_url, database_url)
        runner.wait_healthy()
        creds = runner.credentials()
        issued = httpx.post(f"{settings.base_url}/v1/api-keys", json={"client": "demo", "note": "whistle up"},
                            headers={"Authorization": f"Bearer {creds['supervisor']['token']}"}, timeout=10.0)
        issued.raise_for_status()
        creds["open311_api_key"] = issued.json()["api_key"]  # a fresh key each start; old ones stay valid
        creds["nats_url"] = nats_url  # the admin's (tests, benches, the nats CLI); the file is 0600
        if settings.demo:
            creds["console"] = asyncio.run(set_demo_passwords(nats_url, creds, runner.signer()))
            seeded = demo.seed(creds)
            if seeded:
                log.info("demo.seeded", whistles=seeded)
        # written last, whole, then renamed: tests and scripts wait for it as the sign that all is up,
        # and a fault they inject then must not hit the demo's seeding (a failed seed stops the runner)
        path = runner.home / "credentials.json"
        keys.write_private(path, json.dumps(creds, ensure_ascii=False, indent=2))  # 0600 from its first byte
        print(banner(creds, path, demo=settings.demo), flush=True)
        while True:
            runner.supervise_once()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        runner.stop_all()


def banner(creds: dict, path: Path, demo: bool = True) -> str:
    """What `whistle up` prints once everything is up. Tokens and passwords only in a demo: otherwise
    they are in credentials.json (0600) alone, never on a terminal or in a log that captures it."""
    lines = [
        "",
        f"Whistle is up / 系统已启动: {creds['base_url']}   (API docs: {creds['base_url']}/docs)",
        f"credentials / 令牌: {path}",
    ]
    if not demo:
        lines.append(f"  tokens of the dispatcher, the supervisor and {len(creds['responders'])} responders are in"
                     " that file only (readable by you alone) / 令牌仅保存在该文件中（仅本人可读）")
        lines.append("  Ctrl-C stops everything / 按 Ctrl-C 停止")
        return "\n".join(lines)
    lines += [
        f"  dispatcher  {creds['dispatcher']['token']}",
        f"  supervisor  {creds['supervisor']['token']}",
    ]
    for r in creds["responders"][:4]:
        lines.append(f"  {r['id']:<22}{r['token']}")
    if console := creds.get("console"):
        lines.append(f"console / 控制台: {console['url']}   user name / 用户名 → password / 密码:")
        for role in ("dispatcher", "supervisor", "responders"):
            lines.append(f"  {console[role]['username']:<34}{console[role]['password']}")
    lines.append(f"  … {len(creds['responders'])} responders in all. Ctrl-C stops everything / 按 Ctrl-C 停止")
    return "\n".join(lines)
