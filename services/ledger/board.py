"""The SLA board's query: every open summons with its clocks, filtered, newest first, a page at a time."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from shared import paging
from shared.contracts import Command, Reply

OPEN_STATES = ("issued", "reported", "on_site")
SLA_STATES = ("warned", "breached", "paused")
TIERS = ("routine", "urgent", "complex")
_TEXT_FILTERS = ("tier", "category", "unit", "state")

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


def _refused(field: str) -> Reply:
    return Reply.refuse(422, "invalid", f"{field}: not a valid filter / 筛选条件无效", field)


class BoardHandlers:
    async def board(self, pool: asyncpg.Pool, cmd: Command) -> Reply:
        """Open summons with their deadlines, by building(s), tier, category, unit, state or whistles (dispatchers, supervisors;
        a responder gets only its own)."""
        p = cmd.payload
        if cmd.actor.role == "responder":  # its own open summons with their clocks (the console's phone view)
            p = {**p, "unit": cmd.actor.id}
        elif cmd.actor.role not in ("dispatcher", "supervisor", "system"):  # system: the console's live hub
            return Reply.refuse(403, "forbidden", "dispatchers and supervisors only / 仅限调度员和督办")
        for name in _TEXT_FILTERS:
            value = p.get(name)
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 64):
                return _refused(name)
        if p.get("tier") is not None and p["tier"] not in TIERS:
            return _refused("tier")
        if p.get("state") is not None and p["state"] not in OPEN_STATES + SLA_STATES:
            return _refused("state")
        buildings = p.get("buildings")
        if buildings is not None and (not isinstance(buildings, list) or len(buildings) > 100
                                      or not all(isinstance(b, str) and len(b) <= 16 for b in buildings)):
            return _refused("buildings")
        whistles = p.get("whistle_ids")
        if whistles is not None:
            try:
                whistles = [UUID(str(w)) for w in whistles][:1000]
            except (TypeError, ValueError):
                return _refused("whistle_ids")
        asked = paging.window(p, 100, paging.aware, paging.uuid)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        at, last = after or (None, None)
        rows = await pool.fetch(_SQL, list(OPEN_STATES), buildings, p.get("tier"), p.get("category"), p.get("unit"),
                                p.get("state"), whistles, last, at, limit + 1)
        return Reply.success(paging.page([_row(r) for r in rows], limit, lambda r: (r["issued_at"], r["id"])))
