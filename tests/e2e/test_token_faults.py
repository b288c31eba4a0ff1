"""The revocation path under faults: a deactivated responder is still refused within a second on every
gateway after Postgres restarted (routing's LISTEN connection is opened again), after NATS was killed -9
(the gateways subscribe again and read the list again) and after routing itself was killed -9.

The change is made through one gateway and checked at the other, which learns it only by routing's
notice (tests/e2e/test_tokens.py: the answering gateway knows at once)."""

from __future__ import annotations

import asyncio
import os
import signal

import asyncpg
import httpx

from tests.e2e.conftest import System, wait_for
from tests.e2e.test_faults import dsn
from tests.e2e.test_tokens import DEPARTMENT, new_responder, refused_within, status

LISTENER = "whistle-routing-tokens"  # the application_name of routing's LISTEN connection


def listening(system: System) -> bool:
    """Routing's LISTEN connection is open again (after a restart of Postgres or of routing)."""
    async def count() -> int:
        conn = await asyncpg.connect(dsn(system))
        try:
            return await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
                                       " AND query ILIKE 'LISTEN%'", LISTENER)
        finally:
            await conn.close()

    try:
        return asyncio.run(count()) >= 1
    except (OSError, asyncpg.PostgresError):
        return False


def healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def deactivate_through(base_url: str, system: System, responder_id: str) -> None:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {system.token('supervisor')}"},
                      timeout=10) as sup:
        r = sup.put(f"/v1/responders/{responder_id}", json={**DEPARTMENT, "active": False})
    assert r.status_code == 200, r.text


def assert_deactivation_reaches_the_other_gateway(system: System, other_gateway: str, name: str) -> None:
    token, responder_id = new_responder(system, name)
    assert status(system.base_url, token) == 200 and status(other_gateway, token) == 200
    deactivate_through(other_gateway, system, responder_id)
    refused_within(system.base_url, token)  # told by routing's notice alone


def test_after_postgres_restarted_a_deactivation_reaches_every_gateway_within_a_second(
        system: System, other_gateway: str) -> None:
    wait_for(lambda: listening(system), timeout=30, what="routing listening for token changes")
    before = system.postgres_pid()
    restarted = system.pg_ctl("restart", "-m", "fast", "-w")
    assert restarted.returncode == 0, restarted.stdout
    system.wait_postgres_adopted(other_than=before)
    wait_for(lambda: listening(system), timeout=30, interval=0.2, what="routing listening again")
    for base in (system.base_url, other_gateway):
        wait_for(lambda base=base: healthy(base), timeout=60, what="both gateways healthy")
    assert_deactivation_reaches_the_other_gateway(system, other_gateway, "pg")


def test_after_nats_was_killed_a_deactivation_reaches_every_gateway_within_a_second(
        system: System, other_gateway: str) -> None:
    killed = system.kill_nats()
    wait_for(lambda: system.pids().get("nats") not in (None, killed), timeout=60, what="nats restarted")
    for base in (system.base_url, other_gateway):
        wait_for(lambda base=base: healthy(base), timeout=60, what="both gateways healthy")
    # the gateways' subscriptions and routing's connection come back with NATS: nothing else is restarted
    assert_deactivation_reaches_the_other_gateway(system, other_gateway, "nats")


def test_after_routing_was_killed_a_deactivation_reaches_every_gateway_within_a_second(
        system: System, other_gateway: str) -> None:
    killed = system.pids()["routing"]
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: system.pids().get("routing") not in (None, killed), timeout=60, what="routing restarted")
    for base in (system.base_url, other_gateway):
        wait_for(lambda base=base: healthy(base), timeout=60, what="both gateways healthy")
    wait_for(lambda: listening(system), timeout=30, interval=0.2, what="the new routing listening")
    assert_deactivation_reaches_the_other_gateway(system, other_gateway, "routing")
