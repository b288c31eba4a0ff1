"""The supervisor's inbox: what waits on a decision (extensions, arbitrations, dead letters), counted or listed."""

from __future__ import annotations

import asyncpg

from services.ledger.payloads import InboxAsk
from shared import paging
from shared.contracts import Command, Reply

# one round trip for the console's badge: each count rides a partial index
_COUNTS = (
    "SELECT (SELECT count(*) FROM summons WHERE extension IS NOT NULL AND state IN ('issued', 'reported', 'on_site'))"
    " AS extensions,"
    " (SELECT count(*) FROM whistles WHERE status = 'awaiting_arbitration') AS arbitrations,"
    " (SELECT count(*) FROM dead_letters WHERE replays = 0) AS dead_letters"
)
_EXTENSIONS = (
    "SELECT s.id, s.whistle_id, s.responder_id, s.responder_name, s.role, s.state, s.deadlines, s.extension,"
    " s.updated_at, w.category, w.tier, w.location"
    " FROM summons s JOIN whistles w ON w.id = s.whistle_id"
    " WHERE s.extension IS NOT NULL AND s.state IN ('issued', 'reported', 'on_site')"
    " AND ($2::uuid IS NULL OR (s.updated_at, s.id) < ($3, $2))"
    " ORDER BY s.updated_at DESC, s.id DESC LIMIT $1"
)


def _extension(r: asyncpg.Record) -> dict:
    return {
        "summons_id": str(r["id"]), "whistle_id": str(r["whistle_id"]), "responder_id": r["responder_id"],
        "responder_name": r["responder_name"], "role": r["role"], "state": r["state"],
        "deadlines": r["deadlines"] or {}, "extension": r["extension"], "updated_at": r["updated_at"].isoformat(),
        "category": r["category"], "tier": r["tier"], "location": r["location"] or {},
    }


class InboxHandlers:
    async def inbox(self, pool: asyncpg.Pool, cmd: Command[InboxAsk]) -> Reply:
        """Supervisors: `{"counts": true}` what waits in each part of the inbox; else the pending extension
        requests (延期申请), newest first, a page at a time."""
        if cmd.payload.counts:
            row = await pool.fetchrow(_COUNTS)
            return Reply.success({k: row[k] for k in ("extensions", "arbitrations", "dead_letters")})
        asked = paging.window(cmd.payload.page, 50, paging.aware, paging.uuid)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        at, last = after or (None, None)
        rows = await pool.fetch(_EXTENSIONS, limit + 1, last, at)
        return Reply.success(paging.page([_extension(r) for r in rows], limit,
                                         lambda r: (r["updated_at"], r["summons_id"])))
