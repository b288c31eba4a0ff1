"""The runner supervises its embedded Postgres and nats-server like the services: a crash is
restarted with backoff and logged, a postmaster restarted by hand is adopted, and stopping the
runner stops whatever postmaster runs on its data dir now. Real servers in a temporary home."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
from structlog.testing import capture_logs

from services.cli.embedded import pg_ctl, postmaster_pid, process_alive
from services.cli.runner import Runner
from services.cli.settings import RunnerSettings
from tests.e2e.conftest import free_port


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # not tmp_path: another pytest run of the same user prunes older numbered dirs, data dir and all
    home = Path(tempfile.mkdtemp(prefix="whistle-supervision-")) / "home"
    (home / "logs").mkdir(parents=True)
    runner = Runner(RunnerSettings(home=home, nats_port=free_port(), maintenance_nice=0))
    try:
        runner.start_infrastructure()
        runner.write_pids()
        yield runner
    finally:
        runner.stop_all()
        pid = postmaster_pid(home / "pg")
        if pid and process_alive(pid, "postgres"):  # never leave a server behind, even when a test failed
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home.parent, ignore_errors=True)


def supervise_until(runner: Runner, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run the runner's loop (every 0.2 s) until predicate() is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runner.supervise_once()
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def pids(runner: Runner) -> dict[str, int]:
    return json.loads((runner.home / "pids.json").read_text())


def running_postmaster(runner: Runner) -> int | None:
    pid = postmaster_pid(runner.home / "pg")
    return pid if pid and process_alive(pid, "postgres") else None


def gone(pid: int) -> bool:
    """Not even a zombie is left of `pid`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def select_one(uri: str) -> int:
    conn = await asyncpg.connect(uri, timeout=10)
    try:
        return await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def test_a_postmaster_killed_9_is_restarted_with_backoff_and_written_to_pids_json(runner: Runner) -> None:
    before = pids(runner)["postgres"]
    assert before == running_postmaster(runner)
    with capture_logs() as logs:
        os.kill(before, signal.SIGKILL)
        after = supervise_until(runner, lambda: (p := running_postmaster(runner)) not in (None, before) and p,
                                timeout=30, what="a new postmaster")
        supervise_until(runner, lambda: pids(runner).get("postgres") == after, timeout=5, what="pids.json updated")
    assert asyncio.run(select_one(runner.postgres.uri)) == 1
    events = [e["event"] for e in logs if e["event"].startswith("postgres.")]
    assert events[0] == "postgres.crashed" and events[-1] == "postgres.restarted", events
    crashed = next(e for e in logs if e["event"] == "postgres.crashed")
    assert crashed["pid"] == before and crashed["restart_in_s"] == 1.0


def test_a_postmaster_restarted_outside_the_runner_is_adopted_and_stopped_with_it(runner: Runner) -> None:
    before = pids(runner)["postgres"]
    done = pg_ctl(runner.home / "pg", "restart", "-m", "fast", "-w")
    assert done.returncode == 0, done.stdout
    after = running_postmaster(runner)
    assert after not in (None, before)
    supervise_until(runner, lambda: pids(runner).get("postgres") == after, timeout=5, what="the new pid adopted")
    assert running_postmaster(runner) == after  # adopted, not a second one started beside it
    # until the first postmaster is reaped, pgserver (which stops only the pid it started) still
    # sees it and stops the data dir; afterwards only a runner that follows postmaster.pid does
    supervise_until(runner, lambda: gone(before), timeout=30, what=f"postmaster {before} reaped")
    runner.stop_all()
    assert not process_alive(after, "postgres")
    assert pg_ctl(runner.home / "pg", "status").returncode == 3  # "no server running"


def test_nats_server_killed_9_is_restarted_with_backoff(runner: Runner) -> None:
    before = pids(runner)["nats"]
    with capture_logs() as logs:
        os.kill(before, signal.SIGKILL)
        after = supervise_until(runner, lambda: (p := pids(runner)["nats"]) != before and p,
                                timeout=20, what="nats-server restarted")
    assert process_alive(after, "nats-server")
    events = [(e["event"], e.get("restart_in_s")) for e in logs if e["event"].startswith("nats.")]
    assert events == [("nats.crashed", 1.0), ("nats.restarted", None)], events

    async def round_trip() -> bytes:
        # as the admin: the restarted server still has the users it was first started with
        nc = await nats.connect(runner.nats_url_of("admin", f"nats://127.0.0.1:{runner.settings.nats_port}"))
        try:
            info = await nc.jetstream().account_info()
            assert info is not None
            sub = await nc.subscribe("probe")
            await nc.publish("probe", b"up")
            return (await sub.next_msg(timeout=5)).data
        finally:
            await nc.close()

    assert asyncio.run(round_trip()) == b"up"
