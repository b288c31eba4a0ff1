"""Routing's SQL."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from services.routing.domain import Decision, LoadBook
from shared.contracts import SummonsIssued, SummonsReturned, WhistleBlown, WhistleRouted, WhistleUnroutable


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


async def record(conn: asyncpg.Connection, decision: Decision | None, events, rule: str | None = None) -> None:
    """Assignments for the summons issued, the unroutable queue, and the decision's explanation."""
    rule = next((e.rule for e in events if isinstance(e, WhistleRouted)), rule)
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
    if decision is None:
        return
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


async def save_whistles(conn: asyncpg.Connection, whistles: list[WhistleBlown]) -> None:
    await conn.execute(
        "INSERT INTO whistles (id, blown) SELECT i, b::jsonb FROM unnest($1::uuid[], $2::text[]) AS u(i, b)"
        " ON CONFLICT DO NOTHING",
        [w.whistle_id for w in whistles], [w.model_dump_json() for w in whistles],
    )


async def whistle(conn: asyncpg.Connection, whistle_id: UUID) -> WhistleBlown | None:
    raw = await conn.fetchval("SELECT blown FROM whistles WHERE id = $1", whistle_id)
    return WhistleBlown.model_validate(raw) if raw else None


async def record_return(conn: asyncpg.Connection, e: SummonsReturned) -> list[str]:
    """Record a return; everyone who has returned this whistle, in order."""
    await conn.execute(
        "INSERT INTO returns (summons_id, whistle_id, responder_id, reason_code, at) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT DO NOTHING",
        e.summons_id, e.whistle_id, e.responder_id, e.reason_code, e.occurred_at,
    )
    rows = await conn.fetch("SELECT responder_id FROM returns WHERE whistle_id = $1 ORDER BY at", e.whistle_id)
    return [r["responder_id"] for r in rows]


async def holders(conn: asyncpg.Connection, whistle_id: UUID) -> set[str]:
    rows = await conn.fetch("SELECT responder_id FROM assignments WHERE whistle_id = $1 AND open", whistle_id)
    return {r["responder_id"] for r in rows}


async def lock_arbitration(conn: asyncpg.Connection, whistle_id: UUID) -> tuple[int, bool]:
    """Returns so far and whether a supervisor already arbitrated (locks the whistle row)."""
    await conn.execute("SELECT 1 FROM whistles WHERE id = $1 FOR UPDATE", whistle_id)
    returns = await conn.fetchval("SELECT count(*) FROM returns WHERE whistle_id = $1", whistle_id)
    done = await conn.fetchval("SELECT true FROM arbitrations WHERE whistle_id = $1", whistle_id)
    return returns, bool(done)


async def record_arbitration(conn: asyncpg.Connection, whistle_id: UUID, responder_id: str, supervisor_id: str, at) -> None:
    await conn.execute(
        "INSERT INTO arbitrations (whistle_id, responder_id, supervisor_id, at) VALUES ($1, $2, $3, $4)",
        whistle_id, responder_id, supervisor_id, at,
    )
