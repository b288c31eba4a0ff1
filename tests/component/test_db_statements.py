"""`whistle_db_statements_total`: every statement a service's pool sends to Postgres, on a real Postgres."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from shared.db import create_pool

pytestmark = pytest.mark.asyncio


def _counted(service: str) -> float:
    return REGISTRY.get_sample_value("whistle_db_statements_total", {"service": service}) or 0.0


async def test_each_statement_is_counted_with_begin_and_commit_by_service(infra):
    pool = await create_pool(infra["database_url"], "statements_counted", max_size=2)
    try:
        await asyncio.sleep(0)  # whatever the pool's own start sent is counted by now
        before, other = _counted("statements_counted"), _counted("statements_other")
        async with pool.acquire() as conn, conn.transaction():  # BEGIN, three statements, COMMIT
            await conn.execute("CREATE TEMP TABLE t (n int) ON COMMIT DROP")
            await conn.executemany("INSERT INTO t VALUES ($1)", [(1,), (2,), (3,)])  # one round trip
            assert await conn.fetchval("SELECT sum(n) FROM t") == 6
        await pool.fetchval("SELECT 1")  # outside a transaction: one
        await asyncio.sleep(0)  # asyncpg hands each statement to the counter on the next loop turn
        assert _counted("statements_counted") - before == 6
        assert _counted("statements_other") == other  # labelled by the pool's service, and only its own
    finally:
        await pool.close()
