"""Escalation's SQL."""

from __future__ import annotations

import functools
import json
from dataclasses import fields
from uuid import UUID

import asyncpg

from services.escalation.domain import MUTABLE_FIELDS, Clock, restore
from services.escalation.policy import LadderStep

_FIELDS = [f.name for f in fields(Clock)]
_COLUMNS = ", ".join(_FIELDS)
# each column's type, for set-based SQL over unnest(); the ladder travels as JSON text (an array
# parameter would take its list for a nested array)
_TYPES = {
    "id": "uuid", "summons_id": "uuid", "whistle_id": "uuid", "kind": "text", "responder_id": "text",
    "superior_id": "text", "basis": "text", "budget": "interval", "warn_at": "float8", "ladder": "text",
    "ladder_repeats": "int4", "deadline": "timestamptz", "segment_started_at": "timestamptz",
    "consumed": "interval", "state": "text", "generation": "int4", "warned": "bool", "breached": "bool",
    "steps_done": "int4", "next_step_at": "timestamptz", "fire_at": "timestamptz", "tier": "text",
    "responder_kind": "text", "floor_deadline": "timestamptz",
}
assert set(_TYPES) == set(_FIELDS), "every Clock field needs its column type"
_MUTABLE = ["id", *sorted(MUTABLE_FIELDS)]
# read as text: the few distinct ladders are parsed once each (_ladder), not once per row
_SELECT = ", ".join("ladder::text AS ladder" if n == "ladder" else n for n in _FIELDS)


def _unnest(names: list[str]) -> str:
    types = {**_TYPES, "was": "int4"}  # was: the generation a firing was worked out at
    return "unnest(" + ", ".join(f"${i}::{types[n]}[]" for i, n in enumerate(names, start=1)) + f") AS u({', '.join(names)})"


_INSERT = (
    f"INSERT INTO clocks ({_COLUMNS}) SELECT {', '.join('u.ladder::jsonb' if n == 'ladder' else f'u.{n}' for n in _FIELDS)}"
    f" FROM {_unnest(_FIELDS)} ON CONFLICT (summons_id, kind) DO NOTHING RETURNING summons_id"
)
# only what can change: fewer arrays to encode and to write
_UPDATE = (
    f"UPDATE clocks SET ({', '.join(_MUTABLE[1:])}) = ({', '.join(f'u.{n}' for n in _MUTABLE[1:])})"
    f" FROM {_unnest(_MUTABLE)} WHERE clocks.id = u.id"
)
# a firing worked out ahead: saved only where the clock is still at the generation it was read at
_SAVE_FIRED = (
    f"UPDATE clocks SET ({', '.join(_MUTABLE[1:])}) = ({', '.join(f'u.{n}' for n in _MUTABLE[1:])})"
    f" FROM {_unnest([*_MUTABLE, 'was'])} WHERE clocks.id = u.id AND clocks.generation = u.was RETURNING clocks.id"
)


def _columns(clocks: list[Clock], names: list[str] = _FIELDS) -> list[list]:
    """The clocks as one list per column, for unnest()."""
    # getattr, not dataclasses.astuple: that deep-copies every field (the ladder's models too)
    return [
        [_ladder_text(c.ladder) for c in clocks] if name == "ladder"
        else [getattr(c, name) for c in clocks]
        for name in names
    ]


def _clock(r: asyncpg.Record) -> Clock:
    values = dict(r)
    values["ladder"] = _ladder(r["ladder"])
    return restore(values)


@functools.lru_cache(maxsize=1024)
def _ladder_text(ladder: tuple[LadderStep, ...]) -> str:
    """A ladder as stored (JSON text), made once: clocks share the policies' few ladders (their steps are
    frozen, so a ladder is its own key)."""
    return json.dumps([s.model_dump(mode="json") for s in ladder])


@functools.lru_cache(maxsize=1024)
def _ladder(text: str) -> tuple[LadderStep, ...]:
    """A stored ladder (JSON text), parsed once: clocks share the policies' few ladders."""
    return tuple(LadderStep.model_validate(s) for s in json.loads(text))


async def insert(conn: asyncpg.Connection, clocks: list[Clock]) -> set[UUID]:
    """Insert new summons' clocks; returns the summons whose clocks went in (not those that had them)."""
    if not clocks:
        return set()
    return {r["summons_id"] for r in await conn.fetch(_INSERT, *_columns(clocks))}


async def lock_clocks(conn: asyncpg.Connection, clock_ids: list[UUID]) -> dict[UUID, Clock]:
    """The clocks by id, locked (in id order, so two transactions cannot deadlock)."""
    rows = await conn.fetch(
        f"SELECT {_SELECT} FROM clocks WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE", clock_ids
    )
    return {r["id"]: _clock(r) for r in rows}


async def read_clocks(pool: asyncpg.Pool, clock_ids: list[UUID]) -> dict[UUID, Clock]:
    """The clocks by id, unlocked (a firing worked out ahead is saved against their generation)."""
    rows = await pool.fetch(f"SELECT {_SELECT} FROM clocks WHERE id = ANY($1::uuid[])", clock_ids)
    return {r["id"]: _clock(r) for r in rows}


async def save_fired(conn: asyncpg.Connection, fired: list[tuple[Clock, int]]) -> set[UUID]:
    """Save fired clocks, each (clock, generation it was read at), where that generation still
    stands; returns the ids saved. A clock changed since (reported, paused, fired) is left alone."""
    if not fired:
        return set()
    clocks = [c for c, _ in fired]
    rows = await conn.fetch(_SAVE_FIRED, *_columns(clocks, _MUTABLE), [was for _, was in fired])
    return {r["id"] for r in rows}


async def lock_summons_clocks(conn: asyncpg.Connection, summons_ids: list[UUID]) -> dict[UUID, list[Clock]]:
    """Each summons' clocks (by kind), locked."""
    rows = await conn.fetch(
        f"SELECT {_SELECT} FROM clocks WHERE summons_id = ANY($1::uuid[]) ORDER BY id FOR UPDATE", summons_ids
    )
    out: dict[UUID, list[Clock]] = {}
    for r in sorted(rows, key=lambda r: r["kind"]):
        out.setdefault(r["summons_id"], []).append(_clock(r))
    return out


async def save(conn: asyncpg.Connection, clocks: list[Clock]) -> None:
    if clocks:
        await conn.execute(_UPDATE, *_columns(clocks, _MUTABLE))


async def count_pending(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM clocks WHERE state = 'running' AND fire_at IS NOT NULL")


async def pending_schedules(pool: asyncpg.Pool, after: UUID | None, limit: int) -> list[asyncpg.Record]:
    """(id, generation, fire_at) of running clocks with a firing, by id after `after`: what their
    schedule should say, a page at a time (keyset paging: memory stays flat at 1M)."""
    return await pool.fetch(
        "SELECT id, generation, fire_at FROM clocks WHERE state = 'running' AND fire_at IS NOT NULL"
        " AND ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        after, limit,
    )


async def lock_unchanged(conn: asyncpg.Connection, seen: list[asyncpg.Record]) -> list[asyncpg.Record]:
    """Lock those of `seen` (id, generation, fire_at) still running at that generation and time.
    A clock locked by a handler is skipped, not waited for: it is being moved, and its mover arms it."""
    return await conn.fetch(
        "SELECT c.id, c.generation, c.fire_at FROM clocks c"
        " JOIN unnest($1::uuid[], $2::int4[], $3::timestamptz[]) AS u(id, generation, fire_at)"
        " ON c.id = u.id AND c.generation = u.generation AND c.fire_at = u.fire_at"
        " WHERE c.state = 'running' ORDER BY c.id FOR UPDATE OF c SKIP LOCKED",
        [r["id"] for r in seen], [r["generation"] for r in seen], [r["fire_at"] for r in seen],
    )
