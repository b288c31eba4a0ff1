"""Routing's SQL."""

from __future__ import annotations

import json
from collections import ChainMap
from uuid import UUID

import asyncpg

from services.routing.domain import Decision, LoadBook
from shared.contracts import SummonsIssued, SummonsReturned, WhistleBlown, WhistleRouted, WhistleUnroutable

# every routing decision of every replica takes this lock first, until its transaction ends: two replicas
# never choose from the same loads (held for one batch's routing, about a millisecond a whistle)
LOADS_LOCK = 0x726F7574_696E67  # "routing"


class LoadCache:
    """The loads as this process last read them, brought up to date in each decision with the rows changed
    since (migration 009): a decision reads what moved, not a row for every responder the district has.

    Every write to `loads` takes a number from `loads_changes` while it holds LOADS_LOCK, which it keeps until
    it commits; a reader takes the lock too, then reads the rows numbered above the highest it has kept. What it
    reads was committed before it took the lock, and no number below them is still to come, so the rows are kept,
    unless its own transaction has written `loads` already (the trigger marks it): those reads may hold
    uncommitted rows, and serve that transaction's book only."""

    def __init__(self) -> None:
        self.load: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.tick = 0
        self.seen = -1  # the highest change number kept (-1: nothing read yet, every row is new)

    async def book(self, conn: asyncpg.Connection) -> tuple[LoadBook, int]:
        """The load book as it stands (nobody else decides until this transaction ends), and the registry's
        version (read in the same round trip)."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOADS_LOCK)
        rows = await conn.fetch(
            "SELECT v.version, current_setting('routing.loads_written', true) = 'yes' AS mine,"
            " l.responder_id, l.open, l.last_tick, l.changed"
            " FROM registry_version v LEFT JOIN loads l ON l.changed > $1", self.seen)
        changed = [r for r in rows if r["responder_id"] is not None]
        if rows[0]["mine"]:  # may hold this transaction's own writes: for its book only
            load = ChainMap({r["responder_id"]: r["open"] for r in changed}, self.load)
            last = ChainMap({r["responder_id"]: r["last_tick"] for r in changed}, self.last)
            tick = max([self.tick, *(r["last_tick"] for r in changed)])
            return LoadBook(ChainMap({}, load), ChainMap({}, last), tick), rows[0]["version"]
        for r in changed:
            self.load[r["responder_id"]] = r["open"]
            self.last[r["responder_id"]] = r["last_tick"]
            self.tick = max(self.tick, r["last_tick"])
            self.seen = max(self.seen, r["changed"])
        # the decision's own changes go into the first map; the cache stays as committed
        return LoadBook(ChainMap({}, self.load), ChainMap({}, self.last), self.tick), rows[0]["version"]


async def save_book(conn: asyncpg.Connection, book: LoadBook) -> None:
    """The summons this transaction added, as increments (a release by another replica meanwhile stays)."""
    if book.assigned:
        ids = list(book.assigned)
        await conn.execute(
            "INSERT INTO loads AS l (responder_id, open, last_tick)"
            " SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])"
            " ON CONFLICT (responder_id) DO UPDATE SET open = l.open + EXCLUDED.open,"
            " last_tick = GREATEST(l.last_tick, EXCLUDED.last_tick)",
            ids, [book.assigned[i] for i in ids], [book.last[i] for i in ids],
        )
        book.assigned.clear()


async def registry_version(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return await conn.fetchval("SELECT version FROM registry_version")


async def record(conn: asyncpg.Connection, decision: Decision | None, events, rule: str | None = None) -> None:
    """Assignments for the summons issued, the unroutable queue, and the decision's explanation."""
    await record_many(conn, [(decision, events, rule)])


async def record_many(conn: asyncpg.Connection, decided: list[tuple[Decision | None, list, str | None]]) -> None:
    """`record` for a batch of whistles' decisions, in three statements whatever the batch's size."""
    assignments, unroutable, decisions = [], [], []
    for decision, events, rule in decided:
        rule = next((e.rule for e in events if isinstance(e, WhistleRouted)), rule)
        assignments += [(e.summons_id, e.whistle_id, e.responder_id, rule or "", e.occurred_at, e.role)
                        for e in events if isinstance(e, SummonsIssued)]
        unroutable += [(e.whistle_id, e.reason, e.occurred_at) for e in events if isinstance(e, WhistleUnroutable)]
        if decision is not None:
            decisions.append((events[0].whistle_id, decision.rule, json.dumps(decision.explain()), events[0].occurred_at))
    if assignments:
        await conn.execute(
            "INSERT INTO assignments (summons_id, whistle_id, responder_id, rule, issued_at, role)"
            " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])",
            *map(list, zip(*assignments, strict=True)),
        )
    if unroutable:
        await conn.execute(
            "INSERT INTO unroutable (whistle_id, reason, at)"
            " SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) ON CONFLICT DO NOTHING",
            *map(list, zip(*unroutable, strict=True)),
        )
    if decisions:
        latest = list({d[0]: d for d in decisions}.values())  # a statement may touch a whistle's row once
        await conn.execute(
            "INSERT INTO decisions (whistle_id, rule, explanation, decided_at)"
            " SELECT w, r, e::jsonb, t FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) AS u(w, r, e, t)"
            " ON CONFLICT (whistle_id) DO UPDATE SET rule = EXCLUDED.rule, explanation = EXCLUDED.explanation,"
            " decided_at = EXCLUDED.decided_at",
            *map(list, zip(*latest, strict=True)),
        )


async def close_assignment(conn: asyncpg.Connection, summons_id: UUID) -> str | None:
    """Mark a summons done (its responder's load one less); returns its responder when it was still open.
    The loads lock is taken before the row of `loads` is (the join needs `locked`'s row first): a writer that
    took the row first and the lock after could deadlock with a decision holding the lock."""
    return await conn.fetchval(
        "WITH closed AS (UPDATE assignments SET open = false WHERE summons_id = $1 AND open RETURNING responder_id),"
        " locked AS (SELECT pg_advisory_xact_lock($2) FROM closed LIMIT 1),"
        " released AS (UPDATE loads l SET open = GREATEST(l.open - 1, 0) FROM closed, locked"
        "  WHERE l.responder_id = closed.responder_id)"
        " SELECT responder_id FROM closed", summons_id, LOADS_LOCK
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
