"""Escalation's SQL."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from services.escalation.domain import Clock
from services.escalation.policy import LadderStep

_COLUMNS = "id, summons_id, whistle_id, kind, responder_id, superior_id, deadline, ladder, state, generation, breached, steps_done, fire_at"


def _row_to_clock(r: asyncpg.Record) -> Clock:
    return Clock(
        id=r["id"], summons_id=r["summons_id"], whistle_id=r["whistle_id"], kind=r["kind"],
        responder_id=r["responder_id"], superior_id=r["superior_id"], deadline=r["deadline"],
        ladder=tuple(LadderStep.model_validate(s) for s in r["ladder"]), state=r["state"],
        generation=r["generation"], breached=r["breached"], steps_done=r["steps_done"], fire_at=r["fire_at"],
    )


async def insert_clock(conn: asyncpg.Connection, c: Clock) -> bool:
    """False when this summons already has such a clock."""
    done = await conn.fetchval(
        f"INSERT INTO clocks ({_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"
        " ON CONFLICT (summons_id, kind) DO NOTHING RETURNING true",
        c.id, c.summons_id, c.whistle_id, c.kind, c.responder_id, c.superior_id, c.deadline,
        [s.model_dump(mode="json") for s in c.ladder], c.state, c.generation, c.breached, c.steps_done, c.fire_at,
    )
    return bool(done)


async def lock_clock(conn: asyncpg.Connection, clock_id: UUID) -> Clock | None:
    r = await conn.fetchrow(f"SELECT {_COLUMNS} FROM clocks WHERE id = $1 FOR UPDATE", clock_id)
    return _row_to_clock(r) if r else None


async def lock_summons_clocks(conn: asyncpg.Connection, summons_id: UUID) -> list[Clock]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM clocks WHERE summons_id = $1 FOR UPDATE", summons_id)
    return [_row_to_clock(r) for r in rows]


async def update_clock(conn: asyncpg.Connection, c: Clock) -> None:
    await conn.execute(
        "UPDATE clocks SET state = $2, generation = $3, breached = $4, steps_done = $5, fire_at = $6 WHERE id = $1",
        c.id, c.state, c.generation, c.breached, c.steps_done, c.fire_at,
    )


async def running_clocks(pool: asyncpg.Pool) -> list[Clock]:
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM clocks WHERE state = 'running'")
    return [_row_to_clock(r) for r in rows]


async def count_running(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM clocks WHERE state = 'running'")
