"""Response's SQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from services.response.domain import Summons, SummonsState
from shared.contracts import SummonsIssued


async def add_summons(conn: asyncpg.Connection, issued: list[SummonsIssued]) -> None:
    """Open the summons routing issued, and their whistles (a batch, one statement; a redelivered one changes
    nothing)."""
    await conn.execute(
        "WITH opened AS (INSERT INTO whistles (id) SELECT DISTINCT unnest($2::uuid[]) ON CONFLICT DO NOTHING)"
        " INSERT INTO summons (id, whistle_id, responder_id, responder_kind, responder_name, role, category, tier,"
        " state, issued_at, updated_at, arbitrated)"
        " SELECT i, w, r, k, n, ro, c, t, 'issued', at, at, a FROM unnest($1::uuid[], $2::uuid[], $3::text[],"
        " $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::bool[])"
        " AS u(i, w, r, k, n, ro, c, t, at, a) ON CONFLICT DO NOTHING",
        [e.summons_id for e in issued], [e.whistle_id for e in issued], [e.responder_id for e in issued],
        [e.responder_kind.value for e in issued], [e.responder_name for e in issued], [e.role for e in issued],
        [e.category for e in issued], [e.tier.value for e in issued], [e.occurred_at for e in issued],
        [e.arbitrated for e in issued],
    )


async def lock_summons(conn: asyncpg.Connection, summons_id: UUID) -> tuple[Summons, dict | None] | None:
    """The summons (locked for this transaction) and its pending extension request, if any."""
    row = await conn.fetchrow(
        "SELECT id, whistle_id, responder_id, state, waiting, extension, role, arbitrated FROM summons"
        " WHERE id = $1 FOR UPDATE",
        summons_id,
    )
    if row is None:
        return None
    extension = row["extension"]
    summons = Summons(
        row["id"], row["whistle_id"], row["responder_id"], SummonsState(row["state"]), row["waiting"],
        extension["clock"] if extension else None, row["role"], row["arbitrated"],
    )
    return summons, extension


async def set_state(
    conn: asyncpg.Connection, summons_id: UUID, at: datetime, *, state: SummonsState | None = None,
    waiting: bool | None = None, extension: dict | None | bool = False,
) -> asyncpg.Record:
    """Update what changed (`extension=False` leaves the pending request as it is); returns what the latency
    metrics are labelled and measured by (issued_at, tier, responder_kind), in the same round trip."""
    return await conn.fetchrow(
        "UPDATE summons SET state = coalesce($2, state), waiting = coalesce($3, waiting),"
        " extension = CASE WHEN $4 THEN $5::jsonb ELSE extension END, updated_at = $6 WHERE id = $1"
        " RETURNING issued_at, tier, responder_kind",
        summons_id, state.value if state else None, waiting, extension is not False,
        extension if extension is not False else None, at,
    )


@dataclass(frozen=True)
class Whistle:
    """A whistle as response sees it (locked for the transaction)."""

    closed: bool
    followed_up: bool  # this closure has its follow-up (回访) answer
    states: list[SummonsState]


async def lock_whistle(conn: asyncpg.Connection, whistle_id: UUID) -> Whistle | None:
    row = await conn.fetchrow(  # its summons' states in the same round trip (only the whistle's row is locked)
        "SELECT closed, followed_up_at, ARRAY(SELECT state FROM summons WHERE whistle_id = $1) AS states"
        " FROM whistles WHERE id = $1 FOR UPDATE OF whistles", whistle_id)
    if row is None:
        return None
    return Whistle(row["closed"], row["followed_up_at"] is not None, [SummonsState(s) for s in row["states"]])


async def close_whistle(conn: asyncpg.Connection, whistle_id: UUID, at: datetime) -> None:
    """Struck off: a new closure, waiting for its one follow-up."""
    await conn.execute("UPDATE whistles SET closed = true, closed_at = $2, followed_up_at = NULL WHERE id = $1",
                       whistle_id, at)


async def followed_up(conn: asyncpg.Connection, whistle_id: UUID, at: datetime) -> None:
    """This closure has its answer: no second one until the whistle is struck off again."""
    await conn.execute("UPDATE whistles SET followed_up_at = $2 WHERE id = $1", whistle_id, at)


async def reopen_whistle(conn: asyncpg.Connection, whistle_id: UUID) -> None:
    await conn.execute("UPDATE whistles SET closed = false WHERE id = $1", whistle_id)


async def resolved_lead(conn: asyncpg.Connection, whistle_id: UUID) -> str | None:
    """Who led the fix: a reopened whistle goes back to the same lead."""
    return await conn.fetchval(
        "SELECT responder_id FROM summons WHERE whistle_id = $1 AND role = 'lead' AND state = 'resolved'"
        " ORDER BY issued_at DESC LIMIT 1",
        whistle_id,
    )


_SUMMONS_PAGE = (
    "SELECT id, whistle_id, responder_id, responder_kind, responder_name, role, category, tier, state,"
    " waiting, extension, issued_at, updated_at FROM summons WHERE {mine}"
    " ($2::timestamptz IS NULL OR (issued_at, id) < ($2, $3::uuid)) ORDER BY issued_at DESC, id DESC LIMIT $1"
)


async def list_summons(pool: asyncpg.Pool, responder_id: str | None, limit: int,
                       after: tuple[datetime, UUID] | None = None) -> list[dict]:
    """A responder's own summons, newest first (all summons for a supervisor or dispatcher), after a page's last."""
    at, last = after or (None, None)
    # two statements, not `$4 IS NULL OR responder_id = $4`: each keeps its own index (a generic plan would not)
    if responder_id is None:
        rows = await pool.fetch(_SUMMONS_PAGE.format(mine=""), limit, at, last)
    else:
        rows = await pool.fetch(_SUMMONS_PAGE.format(mine="responder_id = $4 AND"), limit, at, last, responder_id)
    return [
        {**dict(r), "id": str(r["id"]), "whistle_id": str(r["whistle_id"]),
         "issued_at": r["issued_at"].isoformat(), "updated_at": r["updated_at"].isoformat()}
        for r in rows
    ]


async def count_by_state(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT state, count(*) AS n FROM summons GROUP BY state")
    return {r["state"]: r["n"] for r in rows}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_token(secret: str, nonce: str) -> str:
    """A link's token: the HMAC of its nonce under the service's secret. Only the nonce and the token's
    hash are stored, so the database alone yields no working link, yet the token can be given again
    (to the notifier, which texts it)."""
    mac = hmac.new(secret.encode(), f"follow-up-link:{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()


async def new_follow_up_link(conn: asyncpg.Connection, whistle_id: UUID, at: datetime, secret: str) -> str:
    """A one-time token for the resident's follow-up."""
    nonce = secrets.token_urlsafe(18)
    token = link_token(secret, nonce)
    await conn.execute(
        "INSERT INTO follow_up_links (token_hash, whistle_id, created_at, nonce) VALUES ($1, $2, $3, $4)",
        _hash(token), whistle_id, at, nonce,
    )
    return token


async def latest_follow_up_link(pool: asyncpg.Pool, whistle_id: UUID) -> asyncpg.Record | None:
    """The whistle's newest link (one per verification) and whether it is still open."""
    return await pool.fetchrow(
        "SELECT l.nonce, l.used_at, l.created_at, w.closed, w.followed_up_at IS NOT NULL AS followed_up"
        " FROM follow_up_links l JOIN whistles w ON w.id = l.whistle_id"
        " WHERE l.whistle_id = $1 ORDER BY l.created_at DESC LIMIT 1",
        whistle_id,
    )


# a link and what decides whether it still works: its whistle closed, and no newer link (a re-verification);
# and whether this closure was answered already (by the dispatcher, say)
_LINK = (
    "SELECT l.whistle_id, l.used_at, l.created_at, w.closed, w.followed_up_at IS NOT NULL AS followed_up,"
    " NOT EXISTS (SELECT 1 FROM follow_up_links n"
    " WHERE n.whistle_id = l.whistle_id AND n.created_at > l.created_at) AS latest"
    " FROM follow_up_links l JOIN whistles w ON w.id = l.whistle_id WHERE l.token_hash = $1"
)


async def lock_follow_up_link(conn: asyncpg.Connection, token: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_LINK + " FOR UPDATE OF l", _hash(token))


async def use_follow_up_link(conn: asyncpg.Connection, token: str, at: datetime) -> None:
    await conn.execute("UPDATE follow_up_links SET used_at = $2 WHERE token_hash = $1", _hash(token), at)


async def follow_up_link(pool: asyncpg.Pool, token: str) -> asyncpg.Record | None:
    return await pool.fetchrow(_LINK, _hash(token))
