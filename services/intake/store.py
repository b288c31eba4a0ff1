"""Intake's SQL."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from shared.commands import RaiseWhistle
from shared.contracts import WhistleBlown


async def save_whistle(conn: asyncpg.Connection, e: WhistleBlown, raised: RaiseWhistle) -> None:
    """The whistle as raised; the reporter's phone whole (the event carries it masked)."""
    reporter = raised.reporter
    await conn.execute(
        "INSERT INTO whistles (id, category, description, location, tier, source, raised_by, raised_at,"
        " reporter_name, reporter_phone, attachments) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        e.whistle_id, e.category, e.description, e.location.model_dump(), e.tier.value, e.source.value,
        e.actor, e.occurred_at, reporter.name if reporter else None, reporter.phone if reporter else None,
        e.attachments,
    )


async def lock_idempotency(conn: asyncpg.Connection, actor: str, key: str) -> asyncpg.Record | None:
    """Serialise requests with one key (advisory lock), then read what the key already made."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{actor}|{key}")
    return await conn.fetchrow("SELECT body_hash, whistle_id FROM idempotency WHERE actor = $1 AND key = $2", actor, key)


async def remember_idempotency(conn: asyncpg.Connection, actor: str, key: str, body_hash: str, whistle_id: UUID,
                               at: datetime) -> None:
    await conn.execute(
        "INSERT INTO idempotency (actor, key, body_hash, whistle_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        actor, key, body_hash, whistle_id, at,
    )


async def save_api_key(conn: asyncpg.Connection, key_hash: str, client: str, note: str | None, issued_by: str,
                       at: datetime) -> None:
    await conn.execute(
        "INSERT INTO api_keys (key_hash, client, note, issued_by, issued_at) VALUES ($1, $2, $3, $4, $5)",
        key_hash, client, note, issued_by, at,
    )


async def api_key_client(pool: asyncpg.Pool, key_hash: str) -> str | None:
    return await pool.fetchval("SELECT client FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", key_hash)
