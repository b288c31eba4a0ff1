"""Faults of the parts underneath, on the whole system: Postgres restarted, stopped for 20 s, killed
-9, NATS killed -9. Nothing accepted is lost or doubled, no service is restarted by hand, nothing is
dead-lettered, and health says what is down while it is down."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx

from tests.e2e.conftest import System, wait_for

QUIET = {"category": "ebike_charging", "description": "charging in the stairwell / 楼道充电",
         "location": {"building": "5"}, "tier": "routine", "source": "hotline_12345"}  # 1 h to report: no firings
SCHEMAS = ("intake", "routing", "response", "escalation", "ledger")  # at least these have an outbox


def dsn(system: System) -> str:
    return f"postgresql://postgres:@/postgres?host={system.home / 'pg'}"


class Load:
    """Clients blowing whistles in a thread, each retried with its Idempotency-Key until accepted."""

    def __init__(self, system: System, n: int, clients: int = 8):
        self.system, self.n, self.clients = system, n, clients
        self.accepted: list[str] = []
        self.refusals: dict[int | str, int] = {}
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def join(self, timeout: float = 300) -> list[str]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load did not finish"
        return self.accepted

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.system.token('dispatcher')}"}
        todo = iter(range(self.n))
        async with httpx.AsyncClient(base_url=self.system.base_url, headers=headers, timeout=15) as c:
            async def client() -> None:
                for _ in todo:
                    key = str(uuid.uuid4())
                    for attempt in range(600):
                        try:
                            r = await c.post("/v1/whistles", json=QUIET, headers={"Idempotency-Key": key})
                            status: int | str = r.status_code
                        except httpx.HTTPError as exc:
                            status = type(exc).__name__
                        if status in (200, 201):
                            self.accepted.append(r.json()["id"])
                            break
                        assert status in (503, 504, "ReadTimeout", "ConnectError", "RemoteProtocolError"), r.text
                        self.refusals[status] = self.refusals.get(status, 0) + 1
                        await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))

            await asyncio.gather(*(client() for _ in range(self.clients)))


async def _counts(system: System, ids: list[str], since: datetime) -> dict:
    conn = await asyncpg.connect(dsn(system))
    try:
        whistles = [uuid.UUID(i) for i in ids]
        routed = await conn.fetchval(
            "SELECT count(DISTINCT whistle_id) FROM response.summons WHERE whistle_id = ANY($1)", whistles)
        summons = await conn.fetchval("SELECT count(*) FROM response.summons WHERE whistle_id = ANY($1)", whistles)
        without_clocks = await conn.fetchval(
            "SELECT count(*) FROM response.summons s WHERE s.whistle_id = ANY($1)"
            " AND NOT EXISTS (SELECT 1 FROM escalation.clocks c WHERE c.summons_id = s.id)", whistles)
        in_ledger = await conn.fetchval("SELECT count(*) FROM ledger.whistles WHERE id = ANY($1)", whistles)
        schemas = [r["table_schema"] for r in await conn.fetch(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox'")]
        assert set(schemas) >= set(SCHEMAS), schemas
        outbox = {s: await conn.fetchval(f'SELECT count(*) FROM "{s}".outbox') for s in schemas}
        dead = await conn.fetch("SELECT service, subject, reason FROM ledger.dead_letters WHERE recorded_at >= $1",
                                since)
        return {"accepted": len(set(ids)), "routed": routed, "summons": summons, "without_clocks": without_clocks,
                "in_ledger": in_ledger, "outbox_rows": sum(outbox.values()), "dead_letters": [dict(d) for d in dead]}
    finally:
        await conn.close()


def settled(system: System, ids: list[str], since: datetime, timeout: float = 180) -> dict:
    """The counts once every accepted whistle went all the way (or what they were at the timeout)."""
    def done() -> dict | None:
        try:
            c = asyncio.run(_counts(system, ids, since))
        except (OSError, asyncpg.PostgresError):
            return None
        n = c["accepted"]
        return c if (c["routed"], c["summons"], c["in_ledger"], c["without_clocks"], c["outbox_rows"]) == (
            n, n, n, 0, 0) else None

    try:
        return wait_for(done, timeout, interval=1.0, what="every accepted whistle routed, clocked and projected")
    except AssertionError:
        return asyncio.run(_counts(system, ids, since))


def assert_nothing_lost(counts: dict) -> None:
    n = counts["accepted"]
    assert (counts["routed"], counts["summons"], counts["in_ledger"]) == (n, n, n), counts
    assert (counts["without_clocks"], counts["outbox_rows"], counts["dead_letters"]) == (0, 0, []), counts


def healthz(system: System) -> tuple[int, dict]:
    r = httpx.get(f"{system.base_url}/healthz", timeout=10)
    return r.status_code, r.json()


def test_a_whistle_after_postgres_restarted_while_idle_is_routed_within_5_s(system: System) -> None:
    services = {k: v for k, v in system.pids().items() if k != "postgres"}
    before = system.postgres_pid()
    restarted = system.pg_ctl("restart", "-m", "fast", "-w")
    assert restarted.returncode == 0, restarted.stdout
    back = time.monotonic()
    system.wait_postgres_adopted(other_than=before)
    whistle_id = None
    while whistle_id is None:  # the first blow may meet a connection the restart broke: 503, then again
        with system.client() as c:
            r = c.post("/v1/whistles", json=QUIET)
        if r.status_code == 201:
            whistle_id = r.json()["id"]
        else:
            assert r.status_code == 503 and time.monotonic() - back < 5, r.text
            time.sleep(0.1)
    wait_for(lambda: system.whistle(whistle_id).get("summons"), timeout=5 - (time.monotonic() - back) + 0.5,
             interval=0.05, what="the whistle routed within 5 s of Postgres being back")
    assert {k: v for k, v in system.pids().items() if k != "postgres"} == services, "a service was restarted"


def test_postgres_stopped_for_20_s_under_load_loses_nothing_and_health_names_what_is_down(system: System) -> None:
    since = datetime.now(UTC)
    services = {k: v for k, v in system.pids().items() if k != "postgres"}
    load = Load(system, 2000).start()
    wait_for(lambda: len(load.accepted) >= 300, timeout=60, what="load under way")
    os.kill(system.proc.pid, signal.SIGSTOP)  # the runner would restart Postgres at once
    try:
        stopped = system.pg_ctl("stop", "-m", "fast", "-w")
        assert stopped.returncode == 0, stopped.stdout
        down = time.monotonic()

        def every_service_names_postgres() -> dict | None:
            status, body = healthz(system)
            problems = body.get("problems", {})
            every = len(problems) == len(body["services"])
            return status == 503 and every and all("postgres" in p for p in problems.values()) and body

        body = wait_for(every_service_names_postgres, timeout=15, what="health 503 naming every service's database")
        for problems in body["problems"].values():
            assert "database unreachable" in problems["postgres"]["reason"], problems
        time.sleep(max(0.0, 20 - (time.monotonic() - down)))
        started = system.pg_ctl("start", "-w")
        assert started.returncode == 0, started.stdout
    finally:
        os.kill(system.proc.pid, signal.SIGCONT)
    wait_for(lambda: healthz(system)[0] == 200, timeout=30, what="health 200 again")
    ids = load.join()
    assert load.refusals, "the outage was felt by the clients"
    assert_nothing_lost(settled(system, ids, since))
    assert {k: v for k, v in system.pids().items() if k != "postgres"} == services, "a service was restarted"


def test_postgres_and_nats_killed_under_load_lose_nothing(system: System) -> None:
    since = datetime.now(UTC)
    load = Load(system, 1500).start()
    wait_for(lambda: len(load.accepted) >= 300, timeout=60, what="load under way")
    killed = system.kill_postgres()
    system.wait_postgres_adopted(other_than=killed, timeout=60)
    wait_for(lambda: len(load.accepted) >= 800, timeout=120, what="load going again after Postgres")
    nats_pid = system.kill_nats()
    wait_for(lambda: system.pids().get("nats") not in (None, nats_pid), timeout=60, what="nats restarted")
    ids = load.join()
    assert_nothing_lost(settled(system, ids, since))
    wait_for(lambda: healthz(system)[0] == 200, timeout=30, what="health 200 again")


def test_a_command_that_timed_out_and_committed_later_gets_its_first_reply_on_retry(system: System) -> None:
    whistle_id = system.blow(**QUIET)
    summons = system.wait_summons(whistle_id)["summons"][0]
    responder, key = summons["responder_id"], str(uuid.uuid4())
    path = f"/v1/summons/{summons['id']}/report"
    answers: list[httpx.Response] = []

    async def hold_the_summons_while_reporting() -> None:
        """The report waits on the summons's row lock past the gateway's timeout, then commits."""
        conn = await asyncpg.connect(dsn(system))
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("SELECT 1 FROM response.summons WHERE id = $1 FOR UPDATE", uuid.UUID(summons["id"]))
            async with httpx.AsyncClient(base_url=system.base_url, timeout=30, headers={
                    "Authorization": f"Bearer {system.token(responder)}", "Idempotency-Key": key}) as c:
                answers.append(await c.post(path))
            await tx.rollback()
        finally:
            await conn.close()

    asyncio.run(hold_the_summons_while_reporting())
    assert answers[0].status_code == 504, answers[0].text
    wait_for(lambda: any(t["type"] == "summons.reported" for t in system.whistle(whistle_id)["timeline"]),
             timeout=20, what="the report committed after the timeout")
    with system.client(responder) as c:
        retried = c.post(path, headers={"Idempotency-Key": key})
        assert retried.status_code == 200, retried.text  # its first result, not 409 already_reported
        assert retried.json()["state"] == "reported"
        assert c.post(path, headers={"Idempotency-Key": str(uuid.uuid4())}).status_code == 409  # a new one is refused
    reports = [t for t in system.whistle(whistle_id)["timeline"] if t["type"] == "summons.reported"]
    assert len(reports) == 1, reports
