"""Ledger's SQL for dead letters: record, list, show, mark replayed."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.ledger.dead_letters import DeadLetter, event_type_of, whistle_of

_COLUMNS = ("id, key, source, service, subject, reason, stream, stream_seq, consumer, deliveries, whistle_id,"
            " event_type, body, recorded_at, replays, replayed_at")
_INSERT = (
    "INSERT INTO dead_letters (key, source, service, subject, reason, stream, stream_seq, consumer, deliveries,"
    " body, whistle_id, event_type) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
)
# the runtime's dead letter carries the error; an advisory about the same delivery only a count.
# Whichever comes first makes the row; the runtime's, if it comes second, puts its error in.
_UPSERT = (
    f"{_INSERT} ON CONFLICT (stream, stream_seq, consumer) DO UPDATE SET source = EXCLUDED.source,"
    " reason = EXCLUDED.reason, deliveries = EXCLUDED.deliveries, subject = EXCLUDED.subject,"
    " body = COALESCE(EXCLUDED.body, dead_letters.body), whistle_id = COALESCE(EXCLUDED.whistle_id,"
    " dead_letters.whistle_id), event_type = COALESCE(EXCLUDED.event_type, dead_letters.event_type)"
    " WHERE dead_letters.source = 'advisory' AND EXCLUDED.source = 'runtime'"
)


async def record(conn: asyncpg.Connection, dl: DeadLetter) -> None:
    """Keep a dead letter: one row per (stream, sequence, consumer) when those are known."""
    known = dl.stream is not None and dl.stream_seq is not None and dl.consumer is not None
    await conn.execute(
        _UPSERT if known else f"{_INSERT} ON CONFLICT DO NOTHING",
        dl.key, dl.source, dl.service, dl.subject, dl.reason, dl.stream, dl.stream_seq, dl.consumer, dl.deliveries,
        dl.body, dl.whistle_id, dl.event_type,
    )


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def as_dict(r: asyncpg.Record) -> dict:
    """A row as the API shows it; rows from before the columns existed get the whistle and type from
    the body and subject."""
    body = bytes(r["body"]) if r["body"] is not None else None
    whistle_id = r["whistle_id"] or whistle_of(body)
    return {
        "id": r["id"], "stream": r["stream"], "stream_seq": r["stream_seq"], "subject": r["subject"],
        "event_type": r["event_type"] or event_type_of(r["subject"]),
        "whistle_id": str(whistle_id) if whistle_id else None, "service": r["service"], "consumer": r["consumer"],
        "deliveries": r["deliveries"], "reason": r["reason"], "source": r["source"],
        "recorded_at": _iso(r["recorded_at"]), "replays": r["replays"], "replayed_at": _iso(r["replayed_at"]),
        "body": (body or b"").decode("utf-8", "replace"),
    }


async def dead_letters(pool: asyncpg.Pool, replayed: bool | None, limit: int, before: int | None = None) -> list[dict]:
    """Newest first, older than `before` (a page's last id); `replayed` True: only those replayed at least
    once, False: only those never replayed."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE ($1::boolean IS NULL OR (replays > 0) = $1)"
        " AND ($3::bigint IS NULL OR id < $3) ORDER BY id DESC LIMIT $2",
        replayed, limit, before,
    )
    return [as_dict(r) for r in rows]


async def dead_letter(pool: asyncpg.Pool, dead_letter_id: int) -> dict | None:
    """One dead letter, or None."""
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = $1", dead_letter_id)
    return as_dict(row) if row else None


async def lock(conn: asyncpg.Connection, dead_letter_id: int) -> asyncpg.Record | None:
    """The row, locked for this transaction (two replays at once number themselves 1 and 2)."""
    return await conn.fetchrow(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = $1 FOR UPDATE", dead_letter_id)


async def mark_replayed(conn: asyncpg.Connection, dead_letter_id: int, at: datetime) -> asyncpg.Record:
    """Count one more replay; the row as it now stands."""
    return await conn.fetchrow(
        f"UPDATE dead_letters SET replays = replays + 1, replayed_at = $2 WHERE id = $1 RETURNING {_COLUMNS}",
        dead_letter_id, at,
    )
