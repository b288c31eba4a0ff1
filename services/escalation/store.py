"""Escalation's SQL."""

from __future__ import annotations

from dataclasses import astuple, fields
from uuid import UUID

import asyncpg

from services.escalation.domain import Clock
from services.escalation.policy import LadderStep

_FIELDS = [f.name for f in fields(Clock)]
_COLUMNS = ", ".join(_FIELDS)
_PLACEHOLDERS = ", ".join(f"${i}" for i in range(1, len(_FIELDS) + 1))
_UPDATES = ", ".join(f"{name} = ${i}" for i, name in enumerate(_FIELDS, start=1) if name != "id")


def _row(c: Clock) -> tuple:
    values = dict(zip(_FIELDS, astuple(c), strict=True))
    values["ladder"] = [s.model_dump(mode="json") for s in c.ladder]
    return tuple(values[name] for name in _FIELDS)


def _clock(r: asyncpg.Record) -> Clock:
    values = dict(r)
    values["ladder"] = tuple(LadderStep.model_validate(s) for s in r["ladder"])
    return Clock(**values)


async def insert_clocks(conn: asyncpg.Connection, clocks: list[Clock]) -> bool:
    """False when the summons already has its clocks (a redelivered summons.issued)."""
    if not clocks or await conn.fetchval("SELECT true FROM clocks WHERE summons_id = $1 LIMIT 1", clocks[0].summons_id):
        return False
    await conn.executemany(f"INSERT INTO clocks ({_COLUMNS}) VALUES ({_PLACEHOLDERS})", [_row(c) for c in clocks])
    return True


async def lock_clock(conn: asyncpg.Connection, clock_id: UUID) -> Clock | None:
    r = await conn.fetchrow(f"SELECT {_COLUMNS} FROM clocks WHERE id = $1 FOR UPDATE", clock_id)
    return _clock(r) if r else None


async def lock_summons_clocks(conn: asyncpg.Connection, summons_id: UUID) -> list[Clock]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM clocks WHERE summons_id = $1 ORDER BY kind FOR UPDATE", summons_id)
    return [_clock(r) for r in rows]


async def save(conn: asyncpg.Connection, clocks: list[Clock]) -> None:
    if clocks:
        await conn.executemany(f"UPDATE clocks SET {_UPDATES} WHERE id = $1", [_row(c) for c in clocks])


async def pending_clocks(pool: asyncpg.Pool) -> list[Clock]:
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM clocks WHERE state = 'running' AND fire_at IS NOT NULL")
    return [_clock(r) for r in rows]


async def count_pending(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM clocks WHERE state = 'running' AND fire_at IS NOT NULL")
