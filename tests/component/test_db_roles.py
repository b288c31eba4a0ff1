"""Each service's own Postgres role (services/cli/db_roles.py, run by docker-compose's `db-roles`):
it migrates and uses its own schema, and cannot read, write or drop another service's."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.cli import db_roles
from shared.db import SHARED_MIGRATIONS, create_pool, migrate
from shared.services import BACKGROUND

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def database(infra) -> str:
    """A database of this test's own, the services' roles provisioned in it."""
    admin = await asyncpg.connect(infra["database_url"])
    try:
        await admin.execute("DROP DATABASE IF EXISTS roles_test")
        await admin.execute("CREATE DATABASE roles_test")
    finally:
        await admin.close()
    parts = urlsplit(infra["database_url"])
    return urlunsplit(parts._replace(path="/roles_test"))


async def test_every_service_migrates_as_its_own_role_and_cannot_touch_another_schema(infra, database, tmp_path):
    for service in BACKGROUND:
        (tmp_path / f"db_{service}_password").write_text(f"pw-{service}\n")
    assert await db_roles.provision_all(database, tmp_path) == list(BACKGROUND)
    assert await db_roles.provision_all(database, tmp_path) == list(BACKGROUND)  # again: a rotation

    def as_role(service: str) -> str:
        parts = urlsplit(database)
        return urlunsplit(parts._replace(netloc=f"{service}:pw-{service}@{parts.hostname or ''}"))

    for service in BACKGROUND:  # every service's migrations run under its own role
        pool = await create_pool(as_role(service), service)
        try:
            assert await migrate(pool, [SHARED_MIGRATIONS, ROOT / "services" / service / "migrations"])
            assert await pool.fetchval("SELECT current_user") == service
        finally:
            await pool.close()

    intake = await asyncpg.connect(as_role("intake"))
    try:
        assert await intake.fetchval("SELECT count(*) FROM intake.outbox") == 0  # its own
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await intake.fetch("SELECT * FROM routing.outbox")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await intake.execute("INSERT INTO response.outbox (subject, body) VALUES ('summons.resolved.x', '{}')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await intake.execute("DROP SCHEMA ledger CASCADE")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await intake.execute("CREATE SCHEMA intruder")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await intake.execute("CREATE TABLE public.intruder (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await intake.execute("CREATE ROLE intruder SUPERUSER")
    finally:
        await intake.close()
