"""Component fixtures: one embedded nats-server and Postgres per test module, and a polling helper."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest

from services.cli.embedded import EmbeddedPostgres, start_nats
from tests.e2e.conftest import free_port


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[dict]:
    """{"nats_url", "database_url", "home", "pg"} of servers of this module's own."""
    home = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    port = free_port()
    proc: subprocess.Popen = start_nats(home, port, home / "nats.log")
    pg = None
    try:  # nats-server goes even if Postgres does not start
        pg = EmbeddedPostgres(home)
        yield {"nats_url": f"nats://127.0.0.1:{port}", "database_url": pg.uri, "home": home, "pg": pg}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if pg is not None:
            pg.stop()


async def until(predicate, timeout: float = 30.0):
    """Poll the coroutine function `predicate` until it returns something truthy (or time is up)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)
