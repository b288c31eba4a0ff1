"""The SLA board's query: every open summons with its clocks, filtered, newest first, a page at a time."""

from __future__ import annotations

import asyncpg

from services.ledger.payloads import BoardAsk
from shared import paging
from shared.contracts import Command, Reply

OPEN_STATES = ("issued", "reported", "on_site")  # the filters (payloads.BoardAsk) add warned, breached, paused

_SQL = (
    "SELECT s.id, s.whistle_id, s.responder_id, s.responder_name, s.role, s.state, s.waiting, s.deadlines,"
    " s.warned, s.breached, s.escalations, s.issued_at, w.category, w.tier, w.location, w.status"
    " FROM summons s JOIN whistles w ON w.id = s.whistle_id"
    " WHERE s.state = ANY($1::text[]) AND w.status <> 'closed'"
    " AND ($2::text[] IS NULL OR w.location->>'building' = ANY($2::text[]))"
    " AND ($3::text IS NULL OR w.tier = $3) AND ($4::text IS NULL OR w.category = $4)"
    " AND ($5::text IS NULL OR s.responder_id = $5)"
    " AND ($6::text IS NULL OR ($6 = 'warned' AND s.warned AND NOT s.breached) OR ($6 = 'breached' AND s.breached)"
    "  OR ($6 = 'paused' AND s.waiting) OR s.state = $6)"
    " AND ($7::uuid[] IS NULL OR s.whistle_id = ANY($7::uuid[]))"
    " AND ($8::uuid IS NULL OR s.issued_at < $9 OR (s.issued_at = $9 AND s.id < $8))"
    " ORDER BY s.issued_at DESC, s.id DESC LIMIT $10"
)


def _row(r: asyncpg.Record) -> dict:
    return {
        "id": str(r["id"]), "whistle_id": str(r["whistle_id"]), "responder_id": r["responder_id"],
        "responder_name": r["responder_name"], "role": r["role"], "state": r["state"], "waiting": r["waiting"],
        "deadlines": r["deadlines"] or {}, "warned": r["warned"], "breached": r["breached"],
        "escalations": r["escalations"], "issued_at": r["issued_at"].isoformat(), "category": r["category"],
        "tier": r["tier"], "location": r["location"] or {}, "whistle_status": r["status"],
    }


class BoardHandlers:
    async def board(self, pool: asyncpg.Pool, cmd: Command[BoardAsk]) -> Reply:
        """Open summons with their deadlines, by building(s), tier, category, unit, state or whistles (dispatchers,
        supervisors, the console's live board; a responder gets only its own)."""
        p = cmd.payload
        # a responder: its own open summons with their clocks (the console's phone view)
        unit = cmd.actor.id if cmd.actor.role == "responder" else p.unit
        asked = paging.window(p.page, 100, paging.aware, paging.uuid)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        at, last = after or (None, None)
        rows = await pool.fetch(_SQL, list(OPEN_STATES), p.buildings, p.tier, p.category, unit, p.state,
                                p.whistle_ids, last, at, limit + 1)
        return Reply.success(paging.page([_row(r) for r in rows], limit, lambda r: (r["issued_at"], r["id"])))
