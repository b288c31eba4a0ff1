"""Intake's SQL."""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

import asyncpg

from services.intake.blows import Blow, IdempotencyKey, Seen
from services.intake.classes import ProblemClass
from shared.commands import ReporterIn
from shared.contracts import WhistleBlown


async def save_whistles(conn: asyncpg.Connection, rows: list[tuple[WhistleBlown, ReporterIn | None]]) -> None:
    """Whistles as raised, in one statement: each with its reporter as given (the phone and e-mail whole;
    the event carries them masked), None for intake's own (a problem class's proactive whistle). The one
    insert of a whistle: a batch of blow requests, an import of 12345 orders, the proactive whistles."""
    if not rows:
        return
    await conn.execute(
        "INSERT INTO whistles (id, category, description, location, tier, source, raised_by, raised_at,"
        " reporter_name, reporter_phone, attachments, reporter_email, reporter_sms_consent, reporter_public_consent)"
        " SELECT id, category, description, location::jsonb, tier, source, raised_by, raised_at, reporter_name,"
        " reporter_phone, attachments::jsonb, reporter_email, consent, public FROM unnest($1::uuid[], $2::text[],"
        " $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::text[],"
        " $11::text[], $12::text[], $13::bool[], $14::bool[]) AS t(id, category, description, location, tier, source,"
        " raised_by, raised_at, reporter_name, reporter_phone, attachments, reporter_email, consent, public)",
        [e.whistle_id for e, _ in rows], [e.category for e, _ in rows], [e.description for e, _ in rows],
        [e.location.model_dump_json() for e, _ in rows], [e.tier.value for e, _ in rows],
        [e.source.value for e, _ in rows], [e.actor for e, _ in rows], [e.occurred_at for e, _ in rows],
        [r.name if r else None for _, r in rows], [r.phone if r else None for _, r in rows],
        [json.dumps(e.attachments) for e, _ in rows], [r.email if r else None for _, r in rows],
        [bool(r and r.sms_consent) for _, r in rows], [bool(r and r.public_consent) for _, r in rows],
    )


async def reporter_contact(pool: asyncpg.Pool, whistle_id: UUID) -> asyncpg.Record | None:
    """The reporter's whole phone and whether they agreed to be texted."""
    return await pool.fetchrow(
        "SELECT reporter_phone, reporter_sms_consent FROM whistles WHERE id = $1", whistle_id)


async def claim_idempotency(conn: asyncpg.Connection, blows: list[Blow], at: datetime) -> set[IdempotencyKey]:
    """Record each blow's key with its body and whistle; the keys that were free (claimed now).

    A key already held (or claimed meanwhile by another intake process, whose commit this waits
    for) is left as it is: ON CONFLICT DO NOTHING.
    """
    if not blows:
        return set()
    rows = await conn.fetch(
        "INSERT INTO idempotency (actor, key, body_hash, whistle_id, created_at)"
        " SELECT actor, key, body_hash, whistle_id, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[])"
        " AS t(actor, key, body_hash, whistle_id) ON CONFLICT (actor, key) DO NOTHING RETURNING actor, key",
        [b.key[0] for b in blows], [b.key[1] for b in blows], [b.body_hash for b in blows],
        [b.whistle.whistle_id for b in blows], at,
    )
    return {(r["actor"], r["key"]) for r in rows}


async def seen_idempotency(conn: asyncpg.Connection, keys: list[IdempotencyKey]) -> dict[IdempotencyKey, Seen]:
    """What each of these keys already made."""
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT i.actor, i.key, i.body_hash, i.whistle_id FROM idempotency i"
        " JOIN unnest($1::text[], $2::text[]) AS k(actor, key) ON i.actor = k.actor AND i.key = k.key",
        [a for a, _ in keys], [k for _, k in keys],
    )
    return {(r["actor"], r["key"]): Seen(r["body_hash"], r["whistle_id"]) for r in rows}


async def save_api_key(conn: asyncpg.Connection, key_hash: str, client: str, note: str | None, issued_by: str,
                       at: datetime) -> None:
    await conn.execute(
        "INSERT INTO api_keys (key_hash, client, note, issued_by, issued_at) VALUES ($1, $2, $3, $4, $5)",
        key_hash, client, note, issued_by, at,
    )


async def revoke_api_keys(conn: asyncpg.Connection, client: str, by: str, at: datetime) -> int:
    """Revoke the client's active keys; how many there were."""
    rows = await conn.fetch(
        "UPDATE api_keys SET revoked_at = $2, revoked_by = $3"
        " WHERE client = $1 AND revoked_at IS NULL RETURNING key_hash",
        client, at, by,
    )
    return len(rows)


async def api_key_client(pool: asyncpg.Pool, key_hash: str) -> str | None:
    return await pool.fetchval("SELECT client FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", key_hash)


_CLASS_COLUMNS = ("id, category, building, grid, first_whistle_id, size, first_seen, last_seen,"
                  " proactive_whistle_id, raised_at")


async def candidate_classes(conn: asyncpg.Connection, whistles: list[WhistleBlown],
                            since: datetime) -> list[ProblemClass]:
    """The classes these whistles could join: same category, and a whistle's grid or else its building."""
    rows = await conn.fetch(
        f"SELECT {_CLASS_COLUMNS} FROM problem_classes c WHERE c.last_seen >= $4 AND EXISTS ("
        " SELECT 1 FROM unnest($1::text[], $2::text[], $3::text[]) AS k(category, building, grid)"
        " WHERE c.category = k.category AND CASE WHEN k.grid IS NULL THEN c.building = k.building"
        " ELSE c.grid = k.grid END)",
        [w.category for w in whistles], [w.location.building for w in whistles], [w.location.grid for w in whistles],
        since,
    )
    return [ProblemClass(**dict(r)) for r in rows]


async def lock_categories(conn: asyncpg.Connection, categories: set[str]) -> None:
    """Until this transaction ends, no other intake replica groups whistles of these categories (taken in
    one order, so two batches never wait on each other's locks)."""
    await conn.execute(
        "SELECT count(pg_advisory_xact_lock(k)) FROM"
        " (SELECT hashtextextended('intake.problem_classes/' || c, 0) AS k FROM unnest($1::text[]) AS c ORDER BY c) s",
        sorted(categories),
    )


async def grouped_among(conn: asyncpg.Connection, whistle_ids: list[UUID]) -> set[UUID]:
    """Those of these whistles that already joined a class (their events seen again, e.g. a stream replayed)."""
    rows = await conn.fetch("SELECT whistle_id FROM class_members WHERE whistle_id = ANY($1::uuid[])", whistle_ids)
    return {r["whistle_id"] for r in rows}


async def save_classes(conn: asyncpg.Connection, changed: list[ProblemClass],
                       members: list[tuple[UUID, UUID, datetime]]) -> None:
    """Insert or update the classes as they now stand, and attach the members (class, whistle, joined at)."""
    await conn.execute(
        f"INSERT INTO problem_classes ({_CLASS_COLUMNS}) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[],"
        " $4::text[], $5::uuid[], $6::int[], $7::timestamptz[], $8::timestamptz[], $9::uuid[], $10::timestamptz[])"
        " ON CONFLICT (id) DO UPDATE SET size = EXCLUDED.size, last_seen = EXCLUDED.last_seen,"
        " proactive_whistle_id = EXCLUDED.proactive_whistle_id, raised_at = EXCLUDED.raised_at",
        *(list(column) for column in zip(*(
            (c.id, c.category, c.building, c.grid, c.first_whistle_id, c.size, c.first_seen, c.last_seen,
             c.proactive_whistle_id, c.raised_at) for c in changed), strict=True)),
    )
    await conn.execute(
        "INSERT INTO class_members (class_id, whistle_id, joined_at)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[])",
        *(list(column) for column in zip(*members, strict=True)),
    )


MAX_LISTED_MEMBERS = 1000  # member ids listed per class (`size` counts them all): a page's rows stay bounded


async def list_classes(pool: asyncpg.Pool, status: str | None, category: str | None, building: str | None,
                       limit: int, after: tuple[datetime, UUID] | None = None) -> list[dict]:
    """Classes, newest first (by when they began: a stable order to page by), after a page's last, each with
    its first member whistle ids in the order they joined."""
    at, last = after or (None, None)
    rows = await pool.fetch(
        f"SELECT {', '.join('c.' + col for col in _CLASS_COLUMNS.split(', '))},"
        " (array_agg(m.whistle_id ORDER BY m.joined_at, m.whistle_id))[1:$7] AS member_ids"
        " FROM problem_classes c JOIN class_members m ON m.class_id = c.id"
        " WHERE ($1::text IS NULL OR ($1 = 'raised') = (c.raised_at IS NOT NULL))"
        " AND ($2::text IS NULL OR c.category = $2) AND ($3::text IS NULL OR c.building = $3)"
        " AND ($5::timestamptz IS NULL OR (c.first_seen, c.id) < ($5, $6::uuid))"
        " GROUP BY c.id ORDER BY c.first_seen DESC, c.id DESC LIMIT $4",
        status, category, building, limit, at, last, MAX_LISTED_MEMBERS,
    )
    return [dict(r) for r in rows]


async def lock_imports(conn: asyncpg.Connection) -> None:
    """Serialise hotline imports until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('intake.hotline_import'))")


async def imported_orders(conn: asyncpg.Connection, external_ids: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT external_id FROM hotline_orders WHERE external_id = ANY($1::text[])", external_ids)
    return {r["external_id"] for r in rows}


async def remember_order(conn: asyncpg.Connection, external_id: str, whistle_id: UUID, received_at: datetime,
                         at: datetime) -> None:
    await conn.execute(
        "INSERT INTO hotline_orders (external_id, whistle_id, received_at, imported_at) VALUES ($1, $2, $3, $4)",
        external_id, whistle_id, received_at, at,
    )


# --- reporters' personal data (shared/privacy.py) -------------------------------------------------


_HAS_REPORTER = ("(reporter_name IS NOT NULL OR reporter_phone IS NOT NULL OR reporter_email IS NOT NULL"
                 " OR reporter_sms_consent OR reporter_public_consent)")


async def lock_reporter(conn: asyncpg.Connection, whistle_id: UUID) -> asyncpg.Record | None:
    """The whistle's reporter as kept, locked until the transaction ends."""
    return await conn.fetchrow(
        "SELECT id, reporter_name, description, reporter_removed FROM whistles WHERE id = $1 FOR UPDATE", whistle_id)


async def due_reporters(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> list[asyncpg.Record]:
    """Whistles struck off (and not reopened since) at or before `cutoff` whose reporter data is still here,
    locked (another intake replica skips them)."""
    return await conn.fetch(
        "SELECT id, reporter_name, description FROM whistles WHERE reporter_removed_at IS NULL"
        " AND closed_at IS NOT NULL AND closed_at <= $1 AND (reopened_at IS NULL OR closed_at > reopened_at)"
        f" AND {_HAS_REPORTER} ORDER BY closed_at LIMIT $2 FOR UPDATE SKIP LOCKED", cutoff, limit)


async def remove_reporters(conn: asyncpg.Connection, rows: list[tuple[UUID, str | None]], why: str,
                           at: datetime) -> None:
    """Forget each whistle's reporter (name, phone, e-mail, consents); its description as given, masked:
    (whistle, masked description)."""
    await conn.execute(
        "UPDATE whistles w SET reporter_name = NULL, reporter_phone = NULL, reporter_email = NULL,"
        " reporter_sms_consent = false, reporter_public_consent = false, description = COALESCE(u.d, w.description),"
        " reporter_removed = $3, reporter_removed_at = $4"
        " FROM unnest($1::uuid[], $2::text[]) AS u(id, d) WHERE w.id = u.id",
        [i for i, _ in rows], [d for _, d in rows], why, at)
