"""Routing's SQL."""

from __future__ import annotations

import asyncpg

from shared.contracts import SummonsIssued, WhistleRouted, WhistleUnroutable


async def open_load(conn: asyncpg.Connection, responder_ids: list[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT responder_id, count(*) AS n FROM assignments WHERE open AND responder_id = ANY($1::text[])"
        " GROUP BY responder_id",
        responder_ids,
    )
    return {r["responder_id"]: r["n"] for r in rows}


async def record(conn: asyncpg.Connection, events) -> None:
    rule = next((e.rule for e in events if isinstance(e, WhistleRouted)), "")
    for e in events:
        if isinstance(e, SummonsIssued):
            await conn.execute(
                "INSERT INTO assignments (summons_id, whistle_id, responder_id, rule, issued_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                e.summons_id, e.whistle_id, e.responder_id, rule, e.occurred_at,
            )
        elif isinstance(e, WhistleUnroutable):
            await conn.execute(
                "INSERT INTO unroutable (whistle_id, reason, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                e.whistle_id, e.reason, e.occurred_at,
            )


async def close_assignment(conn: asyncpg.Connection, summons_id) -> None:
    await conn.execute("UPDATE assignments SET open = false WHERE summons_id = $1", summons_id)
