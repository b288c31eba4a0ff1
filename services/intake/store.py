"""Intake's SQL."""

from __future__ import annotations

import asyncpg

from shared.contracts import WhistleBlown


async def save_whistle(conn: asyncpg.Connection, e: WhistleBlown) -> None:
    await conn.execute(
        "INSERT INTO whistles (id, category, description, location, tier, source, raised_by, raised_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        e.whistle_id, e.category, e.description, e.location.model_dump(), e.tier.value, e.source.value,
        e.actor, e.occurred_at,
    )
