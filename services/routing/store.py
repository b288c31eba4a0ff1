"""Routing's SQL."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from services.routing.domain import Decision, LoadBook
from shared.contracts import SummonsIssued, WhistleRouted, WhistleUnroutable


async def load_book(pool: asyncpg.Pool) -> LoadBook:
    """Open summons per responder and the order they were last summoned in, from the assignments."""
    book = LoadBook()
    rows = await pool.fetch(
        "SELECT responder_id, count(*) FILTER (WHERE open) AS open, max(issued_at) AS last"
        " FROM assignments GROUP BY responder_id ORDER BY last"
    )
    for tick, r in enumerate(rows, start=1):
        book.load[r["responder_id"]] = r["open"]
        book.last[r["responder_id"]] = tick
    book.tick = len(rows)
    return book


async def record(conn: asyncpg.Connection, decision: Decision, events) -> None:
    rule = next((e.rule for e in events if isinstance(e, WhistleRouted)), None)
    issued = [e for e in events if isinstance(e, SummonsIssued)]
    if issued:
        await conn.executemany(
            "INSERT INTO assignments (summons_id, whistle_id, responder_id, rule, issued_at, role)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(e.summons_id, e.whistle_id, e.responder_id, rule or "", e.occurred_at, e.role) for e in issued],
        )
    for e in events:
        if isinstance(e, WhistleUnroutable):
            await conn.execute(
                "INSERT INTO unroutable (whistle_id, reason, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                e.whistle_id, e.reason, e.occurred_at,
            )
    await conn.execute(
        "INSERT INTO decisions (whistle_id, rule, explanation, decided_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (whistle_id) DO UPDATE SET rule = $2, explanation = $3, decided_at = $4",
        events[0].whistle_id, decision.rule, decision.explain(), events[0].occurred_at,
    )


async def close_assignment(conn: asyncpg.Connection, summons_id: UUID) -> str | None:
    """Mark a summons done; returns its responder when it was still open."""
    return await conn.fetchval(
        "UPDATE assignments SET open = false WHERE summons_id = $1 AND open RETURNING responder_id", summons_id
    )


async def explanation(pool: asyncpg.Pool, whistle_id: UUID) -> dict | None:
    row = await pool.fetchrow("SELECT rule, explanation, decided_at FROM decisions WHERE whistle_id = $1", whistle_id)
    if row is None:
        return None
    return {**row["explanation"], "decided_at": row["decided_at"].isoformat()}
