"""Ledger's SQL: projections in, views out."""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

import asyncpg

from services.ledger import domain
from services.ledger.rates import Facts, FollowUp, Period, SummonsFacts, WhistleFacts
from shared import privacy
from shared.contracts import (
    EscalationRaised,
    Event,
    ExtensionGranted,
    ExtensionRefused,
    ExtensionRequested,
    SlaBreached,
    SlaRescheduled,
    SlaStarted,
    SlaWarned,
    SummonsIssued,
    SummonsPaused,
    SummonsReported,
    SummonsResolved,
    SummonsResumed,
    WhistleBlown,
    WhistleFollowedUp,
    WhistleReporterErased,
)

# the rates count a summons' first report and first resolution, against the latest deadline announced
_FIRST_TIME = {
    SummonsReported: "UPDATE summons SET reported_at = COALESCE(reported_at, $2) WHERE id = $1",
    SummonsResolved: "UPDATE summons SET resolved_at = COALESCE(resolved_at, $2) WHERE id = $1",
}
# one-way flags: they commute with each other and with every other view update, so a batch sets them last
_FLAGS = {
    SlaWarned: "UPDATE summons SET warned = true WHERE id = $1",
    SlaBreached: "UPDATE summons SET breached = true WHERE id = $1",
    EscalationRaised: "UPDATE summons SET escalations = escalations + 1 WHERE id = $1",
}
_DEADLINE = {
    "report": "UPDATE summons SET report_deadline = $2 WHERE id = $1",
    "resolve": "UPDATE summons SET resolve_deadline = $2 WHERE id = $1",
}


Write = tuple[str, tuple]
_MOVE = ("move",)  # a group of summons moves (they read before they write), one per whistle


async def project_many(conn: asyncpg.Connection, events: list[Event]) -> None:
    """Append a batch to the timeline and update the whistle and summons views, in stream order.

    Set-based: one statement appends the timeline and adds the whistles the batch mentions before
    (or without) their whistle.blown; the events the timeline held already go no further (it is the
    ledger's inbox: a row per event, kept for good, so no second inbox row per event is written); then
    the view updates, in groups of events whose updates are
    the same statements (or that are summons moves), each statement run once for its whole group
    (executemany). A whistle's events touch only its own rows (the whistle, its summons), so only
    each whistle's own order matters: an event joins the first group of its kind that runs after
    its whistle's previous event, else a new group at the end. Round trips then grow with the kinds
    of event in a batch, not with its size. Flags that only ever go one way (warned, breached,
    escalations + 1) are set at the end, whatever their order.
    """
    first: dict[UUID, Event] = {}
    for e in events:
        first.setdefault(e.whistle_id, e)
    # a whistle the ledger meets before its whistle.blown (or whose blown is in an older batch)
    early = [e for e in first.values() if not isinstance(e, WhistleBlown)]
    appended = {r[0] for r in await conn.fetch(
        "WITH early AS (INSERT INTO whistles (id, status, updated_at) SELECT w, 'open', o"
        " FROM unnest($7::uuid[], $8::timestamptz[]) AS u(w, o) ON CONFLICT (id) DO NOTHING)"
        " INSERT INTO timeline (whistle_id, event_id, subject, actor, occurred_at, data)"
        " SELECT w, e, s, a, o, d::jsonb FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],"
        " $5::timestamptz[], $6::text[]) AS u(w, e, s, a, o, d) ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        [e.whistle_id for e in events], [e.event_id for e in events], [e.subject for e in events],
        [e.actor for e in events], [e.occurred_at for e in events], [e.model_dump_json() for e in events],
        [e.whistle_id for e in early], [e.occurred_at for e in early],
    )}
    # the timeline is the ledger's inbox: an event it already holds (a redelivery, a relay's second copy, a
    # replay) or a second copy in this batch changes no view (escalations + 1 must count an event once)
    fresh = []
    for e in events:
        if e.event_id in appended:
            appended.discard(e.event_id)
            fresh.append(e)
    events = fresh
    flags: dict[str, list[tuple]] = {}
    groups: list[tuple[tuple[str, ...], list]] = []  # in the order they run: statements, writes (or moves)
    last: dict[UUID, int] = {}  # the group of each whistle's latest event
    for e in events:
        if type(e) in _FLAGS:
            flags.setdefault(_FLAGS[type(e)], []).append((e.summons_id,))
            continue
        writes = _view_writes(e)
        if writes == []:
            continue  # nothing to update (the timeline has it)
        kind = _MOVE if writes is None else tuple(sql for sql, _ in writes)
        after = last.get(e.whistle_id, -1) + 1
        at = next((k for k in range(after, len(groups)) if groups[k][0] == kind), len(groups))
        if at == len(groups):
            groups.append((kind, []))
        groups[at][1].append(e if writes is None else writes)
        last[e.whistle_id] = at
    for kind, group in groups:
        if kind == _MOVE:
            await _project_summons_moves(conn, group)
            continue
        for k, sql in enumerate(kind):
            await conn.executemany(sql, [writes[k][1] for writes in group])
    for sql, args in flags.items():
        await conn.executemany(sql, args)
    erased = {e.whistle_id: e.occurred_at for e in events if isinstance(e, WhistleReporterErased)}
    if erased:  # after the batch's whistle.blown (the timeline and the view have what it carried)
        await remove_reporters(conn, list(erased), privacy.ERASURE, max(erased.values()))


def _set_status(whistle_id: UUID, status: str, e: Event) -> Write:
    return (
        "UPDATE whistles SET status = $2, updated_at = $3,"
        " closed_at = CASE WHEN $2 = 'closed' THEN $3 ELSE closed_at END"
        " WHERE id = $1 AND (status <> 'closed' OR $2 = 'reopened')",
        (whistle_id, status, e.occurred_at),
    )


def _view_writes(e: Event) -> list[Write] | None:
    """The view updates of one event; None for a summons move (it reads before it writes)."""
    if isinstance(e, WhistleBlown):
        return [(
            "INSERT INTO whistles (id, category, description, location, tier, source, status, raised_by, raised_at,"
            " updated_at, reporter, attachments) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $8, $9, $10)"
            " ON CONFLICT (id) DO UPDATE SET category = $2, location = $4, tier = $5, source = $6,"
            " raised_by = $7, raised_at = $8, attachments = $10,"
            # a reporter erased or purged before this (a replay, or an erasure taken first) stays gone
            " description = CASE WHEN whistles.reporter_removed_at IS NULL THEN $3 ELSE whistles.description END,"
            " reporter = CASE WHEN whistles.reporter_removed_at IS NULL THEN $9 ELSE whistles.reporter END",
            (e.whistle_id, e.category, e.description, e.location.model_dump(), e.tier.value, e.source.value,
             e.actor, e.occurred_at, e.reporter.model_dump() if e.reporter else None, e.attachments),
        )]
    if type(e) in domain.SUMMONS_STATE:
        return None
    writes: list[Write] = []
    if isinstance(e, SummonsIssued):
        writes += [(
            "INSERT INTO summons (id, whistle_id, responder_id, responder_kind, responder_name, role, state,"
            " issued_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'issued', $7, $7) ON CONFLICT DO NOTHING",
            (e.summons_id, e.whistle_id, e.responder_id, e.responder_kind.value, e.responder_name, e.role,
             e.occurred_at),
        ), _set_status(e.whistle_id, "dispatched", e)]
    elif isinstance(e, SlaStarted):
        writes.append((
            "UPDATE summons SET deadlines = $2, report_deadline = $3, resolve_deadline = $4 WHERE id = $1",
            (e.summons_id, {k: v.isoformat() for k, v in e.deadlines.items()}, e.deadlines.get("report"),
             e.deadlines.get("resolve")),
        ))
    elif isinstance(e, SlaRescheduled):
        writes.append((
            "UPDATE summons SET deadlines = deadlines || jsonb_build_object($2::text, $3::text) WHERE id = $1",
            (e.summons_id, e.clock, e.deadline.isoformat() if e.deadline else None),
        ))
        if e.deadline is not None and e.clock in _DEADLINE:  # a pause (None) keeps the last deadline
            writes.append((_DEADLINE[e.clock], (e.summons_id, e.deadline)))
    elif isinstance(e, WhistleFollowedUp):
        writes.append((
            "INSERT INTO followups (event_id, whistle_id, solved, satisfaction, at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (event_id) DO NOTHING",
            (e.event_id, e.whistle_id, e.solved, e.satisfaction, e.occurred_at),
        ))
    elif isinstance(e, ExtensionRequested):  # waits on a supervisor (the console's inbox)
        writes.append((
            "UPDATE summons SET extension = $2, updated_at = $3 WHERE id = $1",
            (e.summons_id, {"clock": e.clock, "new_deadline": e.new_deadline.isoformat(), "reason": e.reason,
                            "requested_at": e.occurred_at.isoformat()}, e.occurred_at),
        ))
    elif isinstance(e, (ExtensionGranted, ExtensionRefused)):
        writes.append(("UPDATE summons SET extension = NULL, updated_at = $2 WHERE id = $1",
                       (e.summons_id, e.occurred_at)))
    elif isinstance(e, (SummonsPaused, SummonsResumed)):
        writes.append((
            "UPDATE summons SET waiting = $2, updated_at = $3 WHERE id = $1",
            (e.summons_id, isinstance(e, SummonsPaused), e.occurred_at),
        ))
    elif type(e) in domain.WHISTLE_STATUS:
        writes.append(_set_status(e.whistle_id, domain.WHISTLE_STATUS[type(e)], e))
    return writes


async def _project_summons_moves(conn: asyncpg.Connection, moves: list[Event]) -> None:
    """Responders' moves, one per whistle: each summons' state, then each whistle's status from all
    its summons."""
    await conn.executemany(
        "UPDATE summons SET state = $2, updated_at = $3 WHERE id = $1",
        [(e.summons_id, domain.SUMMONS_STATE[type(e)], e.occurred_at) for e in moves],
    )
    for kind, sql in _FIRST_TIME.items():
        firsts = [(e.summons_id, e.occurred_at) for e in moves if type(e) is kind]
        if firsts:
            await conn.executemany(sql, firsts)
    states: dict[UUID, list[str]] = {e.whistle_id: [] for e in moves}
    for r in await conn.fetch("SELECT whistle_id, state FROM summons WHERE whistle_id = ANY($1::uuid[])",
                              list(states)):
        states[r["whistle_id"]].append(r["state"])
    updates = [_set_status(e.whistle_id, domain.whistle_status(states[e.whistle_id]), e) for e in moves]
    await conn.executemany(updates[0][0], [args for _, args in updates])


def _iso(v):
    return v.isoformat() if v is not None else None


async def whistle(pool: asyncpg.Pool, whistle_id: UUID) -> dict | None:
    """The whistle, its summons with states, and every event in order."""
    async with pool.acquire() as conn:
        w = await conn.fetchrow("SELECT * FROM whistles WHERE id = $1", whistle_id)
        if w is None:
            return None
        summons = await conn.fetch(
            "SELECT * FROM summons WHERE whistle_id = $1 ORDER BY issued_at, id", whistle_id
        )
        timeline = await conn.fetch(
            # in event time (arrival breaks ties): services publish in parallel, so arrival order can
            # put a later event first (a problem class joined after routing answered)
            "SELECT event_id, subject, actor, occurred_at, data FROM timeline WHERE whistle_id = $1"
            " ORDER BY occurred_at, seq",
            whistle_id,
        )
    return {
        "id": str(w["id"]), "status": w["status"], "category": w["category"], "description": w["description"],
        "location": w["location"], "tier": w["tier"], "source": w["source"], "raised_by": w["raised_by"],
        "reporter": w["reporter"], "attachments": w["attachments"],
        "raised_at": _iso(w["raised_at"]), "updated_at": _iso(w["updated_at"]), "closed_at": _iso(w["closed_at"]),
        "summons": [
            {"id": str(s["id"]), "responder_id": s["responder_id"], "responder_kind": s["responder_kind"],
             "responder_name": s["responder_name"], "role": s["role"], "state": s["state"],
             "waiting": s["waiting"], "deadlines": s["deadlines"], "warned": s["warned"], "breached": s["breached"], "escalations": s["escalations"], "issued_at": _iso(s["issued_at"]),
             "updated_at": _iso(s["updated_at"])}
            for s in summons
        ],
        "timeline": [
            {"event_id": str(t["event_id"]), "type": t["subject"], "actor": t["actor"],
             "at": _iso(t["occurred_at"]), "data": t["data"]}
            for t in timeline
        ],
    }


async def responder_has_summons(pool: asyncpg.Pool, whistle_id: UUID, responder_id: str) -> bool:
    """Whether the responder may read the whistle: summoned to it, or a rung one of its summons escalated to
    (a superior, the street command centre, the district: they are told, so they must be able to look)."""
    return bool(await pool.fetchval(
        "SELECT true FROM summons WHERE whistle_id = $1 AND responder_id = $2"
        " UNION ALL SELECT true FROM timeline WHERE whistle_id = $1 AND subject = 'escalation.raised'"
        " AND data->>'target_id' = $2 LIMIT 1", whistle_id, responder_id
    ))


async def whistles(pool: asyncpg.Pool, status: str | None, limit: int,
                   after: tuple[datetime | None, UUID] | None = None) -> list[dict]:
    """The ledger: whistles newest first, open ones (not struck off) unless a status is asked, after a page's last.

    A whistle the ledger knows before its `whistle.blown` (no raised_at yet) comes after every raised one.
    """
    at, last = after or (None, None)
    rows = await pool.fetch(
        "SELECT id, category, tier, source, status, location, raised_at, updated_at FROM whistles"
        " WHERE (($1::text IS NULL AND status <> 'closed') OR status = $1) AND ($3::uuid IS NULL OR CASE"
        "  WHEN $4::timestamptz IS NULL THEN raised_at IS NULL AND id < $3"
        "  ELSE raised_at < $4 OR (raised_at = $4 AND id < $3) OR raised_at IS NULL END)"
        " ORDER BY raised_at DESC NULLS LAST, id DESC LIMIT $2",
        status, limit, last, at,
    )
    return [
        {"id": str(r["id"]), "category": r["category"], "tier": r["tier"], "source": r["source"],
         "status": r["status"], "location": r["location"], "raised_at": _iso(r["raised_at"]),
         "updated_at": _iso(r["updated_at"])}
        for r in rows
    ]


async def rate_facts(pool: asyncpg.Pool, period: Period, responder_id: str | None) -> Facts:
    """Every fact the rates of the period may need: one responder's summons, or all (None)."""
    begins, ends = period.begins, period.ends
    # one snapshot for the three reads, so a projection committing in between cannot split a fact
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        summons = await conn.fetch(
            "SELECT id, whistle_id, responder_id, report_deadline, reported_at, resolve_deadline, resolved_at"
            # a returned or transferred summons is left out: the one that replaced it counts
            " FROM summons WHERE ($3::text IS NULL OR responder_id = $3)"
            " AND state NOT IN ('returned', 'transferred') AND ("
            " (report_deadline >= $1 AND report_deadline < $2)"
            " OR (resolve_deadline >= $1 AND resolve_deadline < $2)"
            " OR (resolved_at >= $1 AND resolved_at < $2)"
            " OR whistle_id IN (SELECT whistle_id FROM followups WHERE at >= $1 AND at < $2)"
            " OR whistle_id IN (SELECT id FROM whistles WHERE closed_at >= $1 AND closed_at < $2))",
            begins, ends, responder_id,
        )
        whistles = await conn.fetch(
            "SELECT id, closed_at FROM whistles WHERE (closed_at >= $1 AND closed_at < $2) OR id = ANY($3::uuid[])",
            begins, ends, list({s["whistle_id"] for s in summons}),
        )
        followups = await conn.fetch(
            "SELECT whistle_id, solved, satisfaction, at FROM followups"
            " WHERE (at >= $1 AND at < $2) OR whistle_id = ANY($3::uuid[])",
            begins, ends, [w["id"] for w in whistles],
        )
    return Facts(
        summons=tuple(
            SummonsFacts(s["id"], s["whistle_id"], s["responder_id"], s["report_deadline"], s["reported_at"],
                         s["resolve_deadline"], s["resolved_at"])
            for s in summons
        ),
        whistles=tuple(WhistleFacts(w["id"], w["closed_at"]) for w in whistles),
        followups=tuple(FollowUp(f["whistle_id"], f["solved"], f["satisfaction"], f["at"]) for f in followups),
    )


# whistles anyone may see on the Open311 edge: raised in public (an Open311 client's own request) or by the community
# itself about a shared place; a resident's call to 12345 or word at a service point only with the reporter's consent
PUBLIC_SOURCES = ("online", "community", "grid_patrol", "proactive")
PUBLIC_CONSENT = "public_consent"  # the reporter's flag for that consent (no intake form sets it yet)
PARTY_MEMBERS = "community party members / 社区党员"  # a party member responds as this, never by name


async def open311_requests(pool: asyncpg.Pool, ids: list[UUID] | None, categories: list[str] | None,
                           begins, ends, closed: bool | None, limit: int,
                           after: tuple[datetime, UUID] | None = None) -> list[dict]:
    """Whistles as Open311 shows them, with the lead summons still in play (ids, when given, override the rest),
    newest first, after a page's last.

    Only public ones (PUBLIC_SOURCES, or the reporter consented), cut to what the public may see: the building of
    the location (no address: it carries the room), the responding unit (a party member is PARTY_MEMBERS). The
    reporter's name and the summoned party members' names come along for masking the free text (`names`), and
    must go no further than the ledger."""
    at, last = after or (None, None)
    rows = await pool.fetch(
        "SELECT w.id, w.category, w.description, w.status,"
        " jsonb_build_object('building', w.location->'building', 'lat', w.location->'lat',"
        "  'long', w.location->'long') AS location, w.attachments, w.raised_at, w.updated_at,"
        " CASE WHEN l.responder_kind = 'member' THEN $10 ELSE l.responder_name END AS agency, l.deadlines,"
        " array_remove(ARRAY(SELECT DISTINCT s.responder_name FROM summons s WHERE s.whistle_id = w.id"
        "  AND s.responder_kind = 'member') || (w.reporter->>'name'), NULL) AS names"
        " FROM whistles w"
        " LEFT JOIN LATERAL (SELECT responder_kind, responder_name, deadlines FROM summons s"
        "  WHERE s.whistle_id = w.id AND s.role = 'lead' AND s.state NOT IN ('returned', 'transferred')"
        "  ORDER BY s.issued_at DESC LIMIT 1) l ON true"
        " WHERE w.raised_at IS NOT NULL AND (w.source = ANY($9::text[]) OR w.reporter->>$11 = 'true')"
        " AND CASE WHEN $1::uuid[] IS NOT NULL THEN w.id = ANY($1::uuid[]) ELSE"
        "  ($2::text[] IS NULL OR w.category = ANY($2::text[])) AND w.raised_at >= $3 AND w.raised_at < $4"
        "  AND ($5::boolean IS NULL OR (w.status = 'closed') = $5) END"
        " AND ($7::timestamptz IS NULL OR (w.raised_at, w.id) < ($7, $8::uuid))"
        " ORDER BY w.raised_at DESC, w.id DESC LIMIT $6",
        ids, categories, begins, ends, closed, limit, at, last, list(PUBLIC_SOURCES), PARTY_MEMBERS, PUBLIC_CONSENT,
    )
    return [
        {"id": str(r["id"]), "category": r["category"], "description": r["description"], "status": r["status"],
         "location": r["location"], "attachments": r["attachments"], "raised_at": _iso(r["raised_at"]),
         "updated_at": _iso(r["updated_at"]), "agency_responsible": r["agency"], "deadlines": r["deadlines"] or {},
         "names": list(r["names"])}
        for r in rows
    ]


# --- reporters' personal data (shared/privacy.py) -------------------------------------------------


async def remove_reporters(conn: asyncpg.Connection, whistle_ids: list[UUID], why: str, at: datetime) -> int:
    """Forget these whistles' reporters: the view keeps only that the data went (why, when), the free text is
    masked, and the timeline's events lose the reporter (whistle.blown) and the number texted (the resident's
    notification.*). The fact of an erasure stays in the timeline (its own event: who, when, why)."""
    if not whistle_ids:
        return 0
    rows = await conn.fetch(
        "SELECT id, reporter, description FROM whistles WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE", whistle_ids)
    blown = await conn.fetch(
        "SELECT seq, whistle_id, data->'reporter'->>'name' AS name, data->>'description' AS description FROM timeline"
        " WHERE whistle_id = ANY($1::uuid[]) AND subject = 'whistle.blown'", whistle_ids)
    names = {b["whistle_id"]: b["name"] for b in blown if b["name"]}
    names |= {r["id"]: r["reporter"]["name"] for r in rows if r["reporter"] and r["reporter"].get("name")}
    await conn.executemany(
        "UPDATE whistles SET reporter = $2, description = $3, reporter_removed_at = $4 WHERE id = $1",
        [(r["id"], privacy.removed_reporter(why, at, r["reporter"]),
          privacy.masked_free_text(r["description"], names.get(r["id"])), at) for r in rows])
    if blown:
        await conn.executemany(
            "UPDATE timeline SET data = data || jsonb_build_object('reporter', NULL, 'description', $2::text)"
            " WHERE seq = $1",
            [(b["seq"], privacy.masked_free_text(b["description"], names.get(b["whistle_id"]))) for b in blown])
    await conn.execute(
        "UPDATE timeline SET data = data || '{\"address\": null, \"answer\": null}'::jsonb"
        " WHERE whistle_id = ANY($1::uuid[]) AND subject LIKE 'notification.%' AND data->>'recipient_id' = 'resident'",
        whistle_ids)
    # a dead-lettered event of theirs too (a replay then sends it without the reporter)
    dead = await conn.fetch("SELECT id, body FROM dead_letters WHERE whistle_id = ANY($1::uuid[]) AND body IS NOT NULL",
                            whistle_ids)
    scrubbed = [(d["id"], body) for d in dead if (body := _without_reporter(d["body"], names)) is not None]
    if scrubbed:
        await conn.executemany("UPDATE dead_letters SET body = $2 WHERE id = $1", scrubbed)
    return len(rows)


def _without_reporter(body: bytes, names: dict[UUID, str]) -> bytes | None:
    """A dead-lettered event's body without its reporter, or None when it carries nothing of them."""
    try:
        data = json.loads(body)
        whistle_id = UUID(data["whistle_id"])
    except (ValueError, TypeError, KeyError):
        return None
    if data.get("reporter") is not None:
        data["reporter"] = None
        data["description"] = privacy.masked_free_text(data.get("description"), names.get(whistle_id))
    elif data.get("recipient_id") == "resident" and (data.get("address") or data.get("answer")):
        data["address"] = data["answer"] = None
    else:
        return None
    return json.dumps(data, ensure_ascii=False).encode()


async def due_reporters(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> list[UUID]:
    """Whistles struck off at or before `cutoff` (closed now: a reopened one is not) that still show a reporter,
    locked (a second ledger replica skips them)."""
    rows = await conn.fetch(
        "SELECT id FROM whistles WHERE status = 'closed' AND closed_at <= $1 AND reporter IS NOT NULL"
        " AND reporter_removed_at IS NULL ORDER BY closed_at LIMIT $2 FOR UPDATE SKIP LOCKED", cutoff, limit)
    return [r["id"] for r in rows]


async def audit(pool: asyncpg.Pool, begins: datetime, ends: datetime, people_only: bool, limit: int,
                after: tuple[datetime, int] | None = None) -> list[dict]:
    """Every event of [begins, ends) in event time (the timeline's order breaks ties), after a page's last: when,
    which whistle, what, and who (role and id); `people_only`: what people did, not what services did."""
    at, seq = after or (None, None)
    rows = await pool.fetch(
        "SELECT seq, occurred_at, whistle_id, subject, actor FROM timeline WHERE occurred_at >= $1 AND occurred_at < $2"
        " AND (NOT $3 OR actor NOT LIKE 'system:%') AND ($5::timestamptz IS NULL OR (occurred_at, seq) > ($5, $6))"
        " ORDER BY occurred_at, seq LIMIT $4",
        begins, ends, people_only, limit, at, seq)
    out = []
    for r in rows:
        role, _, actor_id = r["actor"].partition(":")
        out.append({"at": r["occurred_at"].isoformat(), "whistle_id": str(r["whistle_id"]), "type": r["subject"],
                    "actor_role": role, "actor_id": actor_id, "seq": r["seq"]})
    return out
