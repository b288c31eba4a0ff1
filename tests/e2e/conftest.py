"""End-to-end fixture: `whistle up` as a real process — embedded NATS and Postgres, every service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.cli.embedded import pg_ctl, postmaster_pid, process_alive
from shared.contracts import Command
from shared.partitioned import consumer_name
from shared.partitions import DEFAULT_PARTITIONS
from shared.signing import Signer
from shared.subjects import SERVICES
from tests.signing import wire

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


# every port handed out in this test session: one is bound only when its server starts, perhaps many
# minutes later, and must not be handed out again meanwhile (a fake SMTP server's port once fell inside
# a later `whistle up`'s telemetry block, and every test after it failed on "address already in use")
_HANDED_OUT: set[int] = set()


def _below_ephemeral() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(ports: range) -> bool:
    socks = []
    try:
        for p in ports:
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_port_block(n: int) -> int:
    """The first of n consecutive free ports below the kernel's ephemeral range (a port from that range,
    what binding port 0 gives, can be taken by an outgoing connection before a server started later binds
    it), none handed out before in this session."""
    top = max(_below_ephemeral(), 10100) - 100
    for _ in range(1000):
        ports = range(base := random.randrange(10000, top - n), base + n)
        if _HANDED_OUT.isdisjoint(ports) and _bindable(ports):
            _HANDED_OUT.update(ports)
            return base
    raise RuntimeError(f"no block of {n} free ports")


def free_port() -> int:
    """A free port below the kernel's ephemeral range, not handed out before in this session."""
    return free_port_block(1)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll until predicate() is truthy; return its value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: last={last!r}")


def every_page(client: httpx.Client, path: str, params: dict | None = None) -> list[httpx.Response]:
    """Each page of a list, following X-Next-Cursor until the last."""
    pages = [client.get(path, params=params or {})]
    while (cursor := pages[-1].headers.get("X-Next-Cursor")) is not None:
        assert pages[-1].status_code == 200 and len(pages) < 10_000, pages[-1].text
        pages.append(client.get(path, params={**(params or {}), "cursor": cursor}))
    assert pages[-1].status_code == 200, pages[-1].text
    return pages


@dataclass
class System:
    base_url: str
    home: Path
    nats_url: str
    creds: dict
    proc: subprocess.Popen
    telemetry_base: int = 0
    fake_http_port: int = 0  # the notifier's WeCom, DingTalk and SMS base URLs point here (tests start the fake)
    fake_smtp_port: int = 0  # and its SMTP host
    signing_keys: str = ""  # WHISTLE_SIGNING_KEYS the fixture handed `whistle up` ("kid:secret,…", the first signs)
    auth_secret: str = ""  # WHISTLE_AUTH_SECRET the fixture handed `whistle up` (links, console cookies)

    def telemetry_url(self, service: str) -> str:
        """The private /metrics + /healthz port of a service."""
        index = SERVICES.index(service)
        return f"http://127.0.0.1:{self.telemetry_base + index}"

    def client(self, who: str = "dispatcher") -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.token(who)}"}, timeout=15)

    def token(self, who: str) -> str:
        if who in ("dispatcher", "supervisor"):
            return self.creds[who]["token"]
        return next(r["token"] for r in self.creds["responders"] if r["id"] == who)

    def signer(self, name: str = "gateway") -> Signer:
        """One of the signers `whistle up` made keys for (gateway, notifier, routing, runner), from its home."""
        private = json.loads((self.home / "command-keys.json").read_text())[name]
        return Signer.parse(f"{name}:{private}")

    def signed(self, subject: str, body: dict | Command, name: str = "gateway") -> bytes:
        """A command (its dict as it goes on the wire, or a `Command`) signed for `subject` as `name`."""
        return wire(subject, body, self.signer(name))

    def pids(self) -> dict[str, int]:
        return json.loads((self.home / "pids.json").read_text())

    def postgres_pid(self) -> int | None:
        """The running postmaster's pid (postmaster.pid's first line), None while none runs."""
        pid = postmaster_pid(self.home / "pg")
        return pid if pid and process_alive(pid, "postgres") else None

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The embedded pg_ctl on this system's data dir, logging to its server log; `start` with the
        options the postmaster last ran with. Its output is in `.stdout`."""
        return pg_ctl(self.home / "pg", *args)

    def wait_postgres_adopted(self, other_than: int | None = None, timeout: float = 30.0) -> int:
        """The postmaster's pid once one runs (not `other_than`) and the runner wrote it to pids.json."""
        return wait_for(lambda: (pid := self.postgres_pid()) not in (None, other_than)
                        and self.pids().get("postgres") == pid and pid, timeout, what="the runner's postmaster")

    def kill_postgres(self) -> int:
        """SIGKILL the postmaster; the runner starts a new one with backoff. The killed pid."""
        pid = self.postgres_pid()
        assert pid, "no postmaster running"
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop_postgres_for(self, seconds: float) -> int:
        """Postgres stopped (fast) for `seconds`, the runner paused meanwhile so it cannot restart it,
        then started by hand: the runner must adopt that postmaster. Its pid."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            stopped = self.pg_ctl("stop", "-m", "fast", "-w")
            assert stopped.returncode == 0, stopped.stdout
            time.sleep(seconds)
            started = self.pg_ctl("start", "-w")
            assert started.returncode == 0, started.stdout
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)
        return self.wait_postgres_adopted()

    def kill_nats(self, node: str = "nats") -> int:
        """SIGKILL nats-server (with --cluster: the node "nats-1".."nats-3"); the runner starts a new one
        with backoff. The killed pid."""
        pid = self.pids()[node]
        os.kill(pid, signal.SIGKILL)
        return pid

    def pause_nats_for(self, seconds: float) -> None:
        """nats-server frozen (SIGSTOP) for `seconds`: connections stay open, nothing is answered."""
        pid = self.pids()["nats"]
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    def whistle(self, whistle_id: str) -> dict:
        with self.client() as c:
            r = c.get(f"/v1/whistles/{whistle_id}")
            return r.json() if r.status_code == 200 else {}

    def blow(self, **overrides) -> str:
        body = {"category": "roof_leak", "description": "Top floor leaks / 顶楼漏雨",
                "location": {"building": "7"}, "tier": "routine", "source": "hotline_12345"}
        body.update(overrides)
        with self.client() as c:
            r = c.post("/v1/whistles", json=body)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def wait_summons(self, whistle_id: str, timeout: float = 20.0) -> dict:
        """The whistle once its responder can see the summons (the ledger and response both know it)."""
        whistle = wait_for(lambda: (w := self.whistle(whistle_id)) and w.get("summons") and w, timeout,
                           what=f"summons for {whistle_id}")
        summons = whistle["summons"][0]

        def listed() -> bool:
            with self.client(summons["responder_id"]) as c:
                return summons["id"] in {s["id"] for s in c.get("/v1/summons").json()}

        wait_for(listed, timeout, what=f"summons {summons['id']} in its responder's list")
        return whistle


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with whistle_up(tmp_path_factory) as system_:
        yield system_


@contextlib.contextmanager
def whistle_up(tmp_path_factory: pytest.TempPathFactory, cluster: bool = False, replicas: int = 1) -> Iterator[System]:
    """`whistle up` (with `cluster`: `--cluster`, three NATS nodes; with `replicas`: that many processes of
    each service) in a home of its own; after it stops, no process it started may be left."""
    home = tmp_path_factory.mktemp("whistle-cluster-home" if cluster else "whistle-home")
    # the runner numbers telemetry ports over its seven processes (the gateway's unused), per replica
    port, telemetry = free_port(), free_port_block(len(SERVICES) if replicas == 1 else 7 * replicas)
    nats_port = free_port_block(6) if cluster else free_port()  # with cluster: 3 client ports, then 3 route ports
    fake_http, fake_smtp = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    # no default secret anywhere: the system's secret and two bearer token keys of this run's own, the first
    # signing, the second accepted as a key being rotated out is (tests/e2e/test_tokens.py)
    signing_keys = f"k-new:{secrets.token_urlsafe(32)},k-old:{secrets.token_urlsafe(32)}"
    auth_secret = secrets.token_urlsafe(32)
    env.update(
        WHISTLE_AUTH_SECRET=auth_secret, WHISTLE_SIGNING_KEYS=signing_keys,
        WHISTLE_HOME=str(home), WHISTLE_PORT=str(port), WHISTLE_NATS_PORT=str(nats_port),
        WHISTLE_TELEMETRY_BASE_PORT=str(telemetry), ESCALATION_POLICY_FILE=str(HERE / "policies.json"),
        PYTHONUNBUFFERED="1",
        # one caller with a small limit, to see 429s without slowing anyone else down
        GATEWAY_RATE_OVERRIDES='{"responder:m-b03-secretary": [5, 10]}',
        ESCALATION_RECONCILE_EVERY_S="2",  # periodic reconcile seen within a test (test_clock_reconcile)
        WHISTLE_REPORTER_PURGE_EVERY_S="1",  # each service's reporter purge seen within a test (test_privacy)
        LEDGER_ERASED_IN_LOG_EVERY_S="0.5",  # an erased reporter's whistle.blown leaves the log within a test
        # the notifier's channels at local fakes the notifier tests start (tests/e2e/notifier_fakes.py)
        NOTIFIER_WECOM_BASE_URL=f"http://127.0.0.1:{fake_http}/wecom/send",
        NOTIFIER_DINGTALK_BASE_URL=f"http://127.0.0.1:{fake_http}/dingtalk/send",
        NOTIFIER_SMS_BASE_URL=f"http://127.0.0.1:{fake_http}/sms", NOTIFIER_SMS_API_KEY="fake-sms-key",
        NOTIFIER_SMTP_HOST="127.0.0.1", NOTIFIER_SMTP_PORT=str(fake_smtp),
        NOTIFIER_WEBHOOK_ALLOWED_HOSTS='["127.0.0.1"]',
        NOTIFIER_TIMEOUT_S="3",  # an attempt out at a kill -9 comes due again after 3 x 3 + 5 s
    )
    if cluster:
        env.update(WHISTLE_NATS_CLUSTER_PORT=str(nats_port + 3))
    log = (home / "runner.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "up", *(["--cluster"] if cluster else []),
         *(["--replicas", str(replicas)] if replicas > 1 else [])], cwd=ROOT, env=env,
        stdout=log, stderr=subprocess.STDOUT,
    )
    creds_path = home / "credentials.json"
    try:
        wait_for(lambda: proc.poll() is not None or creds_path.exists(), timeout=180, interval=0.2, what="whistle up")
        if proc.poll() is not None:
            raise RuntimeError(f"whistle up exited: {(home / 'runner.log').read_text()[-3000:]}")
        creds = json.loads(creds_path.read_text())
        # the runner's own (admin) credentials: the embedded NATS lets no one in without a user
        nats_url = creds["nats_url"]
        assert nats_url.split("@", 1)[-1].startswith(f"127.0.0.1:{nats_port}"), nats_url
        sys_ = System(f"http://127.0.0.1:{port}", home, nats_url, creds, proc, telemetry, fake_http, fake_smtp,
                      signing_keys, auth_secret)
        yield sys_
    finally:
        pids = {}
        if (home / "pids.json").exists():
            pids = json.loads((home / "pids.json").read_text())
        pid = postmaster_pid(home / "pg")
        if pid and process_alive(pid, "postgres"):  # the postmaster running now, whether or not the runner saw it
            pids.setdefault("postgres", pid)
            if pids["postgres"] != pid:
                pids["postgres (postmaster.pid)"] = pid
        proc.send_signal(signal.SIGCONT)  # a test that failed while the runner was paused
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        for name, pid in pids.items():  # no orphans: every service, nats-server and the postmaster are gone
            # a zombie is gone: the postmaster's parent is init, which may reap it late
            if not process_alive(pid, "postgres" if name.startswith("postgres") else None):
                continue
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"{name} (pid {pid}) outlived `whistle up`")


@pytest.fixture(scope="module")
def other_gateway(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second gateway replica on a port of its own, on the system's NATS: what one gateway is told,
    the other must know within a second (by routing's notice, not by having answered the request)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "WHISTLE_"))}
    env.update(NATS_URL=system.creds["nats_url"], GATEWAY_PORT=str(port), GATEWAY_HOST="127.0.0.1",
               WHISTLE_AUTH_SECRET=secrets.token_urlsafe(32), WHISTLE_SIGNING_KEYS=system.signing_keys,
               WHISTLE_LOG_JSON="true", PYTHONUNBUFFERED="1",
               # the gateway's own key: the owners verify what it forwards (shared/signing.py)
               WHISTLE_COMMAND_KEY=f"gateway:{json.loads((system.home / 'command-keys.json').read_text())['gateway']}")
    log = tmp_path_factory.mktemp("gateway-2") / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200  # revoked tokens loaded too
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=60, what="a second gateway")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def publish_again(system: System, subjects: str, since: datetime, match: Callable[[dict], bool],
                        consumers: tuple[str, ...], copies: int = 1) -> None:
    """The first event on `subjects` since `since` that `match`es, published again `copies` times (the same
    event id, a new message id each, as a redelivery or a relay's second copy would bring it); then until
    the partitioned `consumers` of the events stream have taken them (an AssertionError if they have not
    within 20 s: a handler failing on a copy holds it back)."""
    nc = await nats.connect(system.nats_url)
    js = nc.jetstream()
    try:
        sub = await js.subscribe(subjects, ordered_consumer=True, deliver_policy=DeliverPolicy.BY_START_TIME,
                                 config=ConsumerConfig(opt_start_time=since))
        while True:
            msg = await sub.next_msg(timeout=10)
            if match(json.loads(msg.data)):
                break
        await sub.unsubscribe()
        for _ in range(copies):
            await js.publish(msg.subject, msg.data, headers={"Nats-Msg-Id": f"again-{uuid.uuid4()}"})
        for _ in range(400):
            infos = [await js.consumer_info("EVENTS", consumer_name(name, range(DEFAULT_PARTITIONS)))
                     for name in consumers]
            if not any(i.num_pending or i.num_ack_pending for i in infos):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{consumers} have not taken {msg.subject} again within 20 s (failing on it?)")
    finally:
        await nc.close()
