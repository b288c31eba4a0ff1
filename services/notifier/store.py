"""Notifier's SQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.notifier.domain import Planned, State
from shared import privacy
from shared.contacts import ContactRule
from shared.db import Queued

WAKE = "notifier_due"  # NOTIFY channel: due notifications were committed


# --- facts the messages need --------------------------------------------------------------------


async def add_whistles(conn: asyncpg.Connection, rows: list[tuple[UUID, str, str, dict, bool]]) -> None:
    """The whistles as blown: (id, category, tier, location, contactable)."""
    if rows:
        await conn.execute(
            "INSERT INTO whistles (id, category, tier, location, contactable)"
            " SELECT i, c, t, l::jsonb, k FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[])"
            " AS u(i, c, t, l, k) ON CONFLICT (id) DO NOTHING",
            *map(list, zip(*[(i, c, t, json.dumps(loc), k) for i, c, t, loc, k in rows], strict=True)),
        )


async def contactable(conn: asyncpg.Connection, whistle_ids: list[UUID]) -> set[UUID]:
    """The whistles whose reporter gave a phone and agreed to be texted."""
    rows = await conn.fetch("SELECT id FROM whistles WHERE id = ANY($1::uuid[]) AND contactable", whistle_ids)
    return {r["id"] for r in rows}


_SUMMONS = (
    "INSERT INTO summons (id, whistle_id, responder_id, responder_name, superior_id, category, tier)"
    " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
    # only summons.issued writes a summons, so a redelivery changes nothing (a row left by the deadlines'
    # old home, before migration 003, is filled in)
    " ON CONFLICT (id) DO UPDATE SET whistle_id = EXCLUDED.whistle_id, responder_id = EXCLUDED.responder_id,"
    " responder_name = EXCLUDED.responder_name, superior_id = EXCLUDED.superior_id, category = EXCLUDED.category,"
    " tier = EXCLUDED.tier WHERE summons.responder_id IS NULL"
)


def _summons_args(rows: list[tuple]) -> list[list]:
    unique = list({r[0]: r for r in rows}.values())  # one row per summons: a statement may touch it once
    return [list(c) for c in zip(*unique, strict=True)] if unique else [[] for _ in range(7)]


async def set_deadlines(conn: asyncpg.Connection, rows: list[tuple[UUID, str, datetime]]) -> None:
    """The latest deadline escalation announced per (summons, clock): (summons, clock, deadline), in stream
    order. Its own table: the summons.> consumer, taking the same burst, never waits on these rows."""
    latest: dict[UUID, dict] = {}
    for summons_id, clock, at in rows:
        latest.setdefault(summons_id, {})[clock] = at
    if latest:
        await conn.execute(
            "INSERT INTO deadlines (summons_id, report_deadline, on_site_deadline, resolve_deadline)"
            " SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[])"
            " ON CONFLICT (summons_id) DO UPDATE SET"
            " report_deadline = COALESCE(EXCLUDED.report_deadline, deadlines.report_deadline),"
            " on_site_deadline = COALESCE(EXCLUDED.on_site_deadline, deadlines.on_site_deadline),"
            " resolve_deadline = COALESCE(EXCLUDED.resolve_deadline, deadlines.resolve_deadline)",
            list(latest), [d.get("report") for d in latest.values()],
            [d.get("on_site") for d in latest.values()], [d.get("resolve") for d in latest.values()],
        )


async def summons_facts(conn: asyncpg.Connection, ids: Iterable[UUID]) -> dict[UUID, asyncpg.Record]:
    rows = await conn.fetch("SELECT * FROM summons WHERE id = ANY($1::uuid[])", list(set(ids)))
    return {r["id"]: r for r in rows}


async def stop(conn: asyncpg.Connection, summons_ids: list[UUID], now: datetime) -> int:
    """A report (or return, transfer): the summons' remaining steps are cancelled at once."""
    if not summons_ids:
        return 0
    await conn.execute("UPDATE summons SET stopped = true WHERE id = ANY($1::uuid[])", summons_ids)
    done = await conn.execute(
        "UPDATE notifications SET state = 'cancelled', updated_at = $2, finished_at = $2"
        " WHERE summons_id = ANY($1::uuid[]) AND state = 'pending' AND stops_on_report",
        summons_ids, now,
    )
    return int(done.split()[-1])


# --- contact rules ------------------------------------------------------------------------------


async def rules(conn: asyncpg.Connection | asyncpg.Pool, ids: Iterable[str]) -> dict[str, ContactRule]:
    rows = await conn.fetch("SELECT recipient_id, rule FROM contact_rules WHERE recipient_id = ANY($1::text[])",
                            list(set(ids)))
    return {r["recipient_id"]: ContactRule.model_validate(r["rule"]) for r in rows}


async def put_rule(conn: asyncpg.Connection, recipient_id: str, rule: ContactRule, actor: str, now: datetime) -> bool:
    """Create or replace; True if it was new."""
    return await conn.fetchval(
        "INSERT INTO contact_rules (recipient_id, rule, updated_by, updated_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (recipient_id) DO UPDATE SET rule = $2, updated_by = $3, updated_at = $4"
        " RETURNING xmax = 0",
        recipient_id, rule.model_dump(mode="json"), actor, now,
    )


async def rule_row(pool: asyncpg.Pool, recipient_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT rule, updated_by, updated_at FROM contact_rules WHERE recipient_id = $1",
                               recipient_id)


# --- notifications ------------------------------------------------------------------------------


_HANDED_FACTS = (
    "SELECT (SELECT count(*) FROM (SELECT pg_notify('{wake}', p) FROM unnest(${notes}::text[]) AS p) AS n) AS woke,"
    " (SELECT coalesce(jsonb_agg(jsonb_build_object('id', a.id, 'kind', a.kind, 'whistle_id', a.whistle_id,"
    " 'summons_id', a.summons_id, 'recipient_id', a.recipient_id, 'step', a.step, 'channel', a.channel,"
    " 'target', a.target, 'details', a.details, 'locale', a.locale, 'tier', a.tier, 'attempts', a.attempts,"
    " 'cause_id', a.cause_id, 'category', w.category, 'location', w.location,"
    " 'whistle_tier', w.tier, 'responder_name', s.responder_name, 'summons_category', s.category,"
    " 'report_deadline', d.report_deadline, 'on_site_deadline', d.on_site_deadline,"
    " 'resolve_deadline', d.resolve_deadline)), '[]'::jsonb)"
    " FROM added a LEFT JOIN whistles w ON w.id = a.whistle_id LEFT JOIN summons s ON s.id = a.summons_id"
    " LEFT JOIN deadlines d ON d.summons_id = a.summons_id"
    " WHERE a.attempts = 1) AS handed"
)


async def add_notifications(conn: asyncpg.Connection, rows: list[tuple[Planned, dict[str, Any]]], now: datetime,
                            wake_within_s: float, summons: list[tuple] = (), *, handed: frozenset[UUID] = frozenset(),
                            lease_s: float = 0.0, token: str = "") -> list[dict[str, Any]]:
    """Write planned notifications (a redelivered event's come back as the same ids: nothing new), and the
    summons they are about (id, whistle, responder, name, superior, category, tier), in one round trip.

    Rows whose id is in `handed` are written already claimed by this process (attempt 1, leased for
    `lease_s`) and, when new, come back with the facts their messages need; `token` is NOTIFY'd at
    commit (never for a rolled-back savepoint), which is when the sender may send them. The other
    rows due soon wake the sender at commit, which claims them from the table."""
    if not rows and not summons:
        return []
    p = [planned for planned, _ in rows]
    m = [meta for _, meta in rows]
    sql = (
        "INSERT INTO notifications (id, cause_id, kind, whistle_id, summons_id, recipient_id, step, channel, target,"
        " details, locale, tier, stops_on_report, state, due_at, next_at, attempts, created_at, updated_at)"
        " SELECT id, c, k, w, s, r, st, ch, t::jsonb, d::jsonb, l, ti, sor, 'pending', due,"
        " CASE WHEN h THEN $15::timestamptz + make_interval(secs => $17::float8) ELSE due END, CASE WHEN h THEN 1 ELSE 0 END, $15, $15"
        " FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::text[],"
        " $9::text[], $10::text[], $11::text[], $12::text[], $13::bool[], $14::timestamptz[], $16::bool[])"
        " AS u(id, c, k, w, s, r, st, ch, t, d, l, ti, sor, due, h) ON CONFLICT (id) DO NOTHING"
        " RETURNING id, kind, whistle_id, summons_id, recipient_id, step, channel, target, details, locale, tier,"
        " attempts, cause_id"
    )
    args = [
        [x.id for x in p], [x["cause_id"] for x in m], [x["kind"] for x in m], [x["whistle_id"] for x in m],
        [x["summons_id"] for x in m], [x.recipient_id for x in p], [x.step for x in p], [x.channel for x in p],
        [json.dumps(x.target) for x in p], [json.dumps(x["details"], default=str) for x in m],
        [x["locale"] for x in m], [x["tier"] for x in m], [x.stops_on_report for x in p], [x.due_at for x in p], now,
        [x.id in handed for x in p], lease_s,
    ]
    ctes = ""
    if summons:  # the summons too, in the same statement (a data-modifying WITH runs once)
        ctes = "facts AS (" + re.sub(r"\$(\d+)", lambda g: f"${int(g[1]) + len(args)}", _SUMMONS) + "), "
        args += _summons_args(list(summons))
    # NOTIFY is delivered at commit: the sender wakes as the rows it can send now become visible
    notes = [token] if token and handed else []
    if any(x.id not in handed and (x.due_at - now).total_seconds() <= wake_within_s for x in p):
        notes.append("")
    args.append(notes)
    found = await conn.fetchrow(f"WITH {ctes}added AS ({sql}) " + _HANDED_FACTS.format(wake=WAKE, notes=len(args)),
                                *args)
    named = {r[0]: (r[3], r[5]) for r in summons}  # issued in this batch: the snapshot the join read lacks them
    out = [_claimed(d) for d in found["handed"]]
    for d in out:
        if d["summons_id"] in named:
            d["responder_name"], d["summons_category"] = named[d["summons_id"]]
    return out


def _claimed(d: dict[str, Any]) -> dict[str, Any]:
    """A handed row as the claim query gives it (JSON has no uuids nor timestamps)."""
    for k in ("id", "whistle_id", "cause_id"):
        d[k] = UUID(d[k])
    if d["summons_id"] is not None:
        d["summons_id"] = UUID(d["summons_id"])
    for k in ("report_deadline", "on_site_deadline", "resolve_deadline"):
        if d[k] is not None:
            d[k] = datetime.fromisoformat(d[k])
    return d


_CLAIM = (
    "WITH due AS (SELECT id FROM notifications WHERE state = 'pending' AND next_at <= $1"
    "  ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED),"
    " claimed AS (UPDATE notifications n SET next_at = $1 + make_interval(secs => $3), attempts = n.attempts + 1"
    "  FROM due WHERE n.id = due.id"
    "  RETURNING n.id, n.kind, n.whistle_id, n.summons_id, n.recipient_id, n.step, n.channel, n.target, n.details,"
    "  n.locale, n.tier, n.attempts, n.cause_id)"
    " SELECT c.*, w.category, w.location, w.tier AS whistle_tier, s.responder_name, s.category AS summons_category,"
    " d.report_deadline, d.on_site_deadline, d.resolve_deadline"
    " FROM claimed c LEFT JOIN whistles w ON w.id = c.whistle_id LEFT JOIN summons s ON s.id = c.summons_id"
    " LEFT JOIN deadlines d ON d.summons_id = c.summons_id"
)


async def claim(pool: asyncpg.Pool, now: datetime, limit: int, lease_s: float) -> list[asyncpg.Record]:
    """Due notifications, each leased (its next_at moved past the attempt's timeout) and its attempt counted:
    another sender skips them, and if this process dies they come due again when the lease ends."""
    return await pool.fetch(_CLAIM, now, limit, lease_s)


async def next_due(pool: asyncpg.Pool) -> datetime | None:
    return await pool.fetchval("SELECT min(next_at) FROM notifications WHERE state = 'pending'")


_RECORD = (
    "WITH recorded AS (UPDATE notifications n SET"
    " state = CASE WHEN n.state = 'cancelled' AND u.st = 'pending' THEN 'cancelled' ELSE u.st END,"
    " next_at = COALESCE(u.nx, n.next_at), answer = u.a, attempt_log = n.attempt_log || u.e::jsonb,"
    " updated_at = $6, finished_at = CASE WHEN u.st IN ('delivered', 'failed') THEN $6 ELSE n.finished_at END"
    " FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[]) AS u(id, st, nx, a, e)"
    " WHERE n.id = u.id),"
    " queued AS (INSERT INTO outbox (subject, headers, body, msg_id)"
    " SELECT s, '{}'::jsonb, b, i FROM unnest($7::text[], $8::bytea[], $9::text[]) AS q(s, b, i) RETURNING seq)"
)


async def record(conn: asyncpg.Connection | asyncpg.Pool, outcomes: list[tuple[UUID, State, datetime | None, str, dict]],
                 events: list[Any], now: datetime) -> list[Queued]:
    """Each attempt's outcome: (id, state, next attempt, answer, log entry), and its event queued in the
    outbox, in one statement (its own transaction). A row a report cancelled while its attempt was out
    stays cancelled unless that attempt delivered it (or failed for good). Returns the outbox rows to
    hand the relay once this committed."""
    bodies = [(e.published_subject, e.model_dump_json().encode(), str(e.event_id)) for e in events]
    args = [
        [o[0] for o in outcomes], [o[1].value for o in outcomes], [o[2] for o in outcomes],
        [o[3] for o in outcomes], [json.dumps(o[4]) for o in outcomes], now,
        [b[0] for b in bodies], [b[1] for b in bodies], [b[2] for b in bodies],
    ]
    # the sequence numbers rows in the order unnest gives them: sorted seqs match the list
    seqs = sorted(r[0] for r in await conn.fetch(_RECORD + " SELECT seq FROM queued", *args))
    return [Queued(seq, subject, body, {"Nats-Msg-Id": msg_id})
            for seq, (subject, body, msg_id) in zip(seqs, bodies, strict=True)]


_LIST = (
    "SELECT id, kind, whistle_id, summons_id, recipient_id, step, channel, target, state, attempts, attempt_log,"
    " answer, due_at, created_at, updated_at, finished_at FROM notifications WHERE {where}"
    " ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2::uuid)) ORDER BY created_at DESC, id DESC LIMIT $3"
)


async def list_notifications(pool: asyncpg.Pool, whistle_id: UUID | None, recipient_id: str | None,
                             state: str | None, limit: int, after: tuple[datetime, UUID] | None) -> list[asyncpg.Record]:
    """Newest first, after a page's last; by whistle, by recipient, or all (each filter its own index)."""
    at, last = after or (None, None)
    where, args = [], [at, last, limit]
    for column, value, cast in (("whistle_id", whistle_id, "uuid"), ("recipient_id", recipient_id, "text"),
                                ("state", state, "text")):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}::{cast} AND")
    return await pool.fetch(_LIST.format(where=" ".join(where)), *args)


# --- reporters' personal data (shared/privacy.py) -----------------------------------------------


async def remove_reporters(conn: asyncpg.Connection, whistle_ids: list[UUID], at: datetime) -> None:
    """Forget these whistles' reporters: never text them (a pending follow-up SMS is cancelled), and their
    notifications keep no number nor the channel's answer."""
    if not whistle_ids:
        return
    await conn.execute("UPDATE whistles SET contactable = false, reporter_removed_at = $2 WHERE id = ANY($1::uuid[])",
                       whistle_ids, at)
    rows = await conn.fetch(
        "SELECT id, attempt_log FROM notifications WHERE whistle_id = ANY($1::uuid[]) AND recipient_id = 'resident'"
        " ORDER BY id FOR UPDATE", whistle_ids)
    if rows:
        await conn.executemany(
            "UPDATE notifications SET attempt_log = $2, answer = NULL, target = '{}'::jsonb, updated_at = $3,"
            " state = CASE WHEN state = 'pending' THEN 'cancelled' ELSE state END,"
            " finished_at = CASE WHEN state = 'pending' THEN $3 ELSE finished_at END WHERE id = $1",
            [(r["id"], privacy.scrubbed_attempts(r["attempt_log"]), at) for r in rows])


async def due_reporters(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> list[UUID]:
    """Whistles struck off (and not reopened since) at or before `cutoff` whose reporter is not forgotten yet,
    locked (another notifier replica skips them)."""
    rows = await conn.fetch(
        "SELECT id FROM whistles WHERE reporter_removed_at IS NULL AND closed_at IS NOT NULL AND closed_at <= $1"
        " AND (reopened_at IS NULL OR closed_at > reopened_at) ORDER BY closed_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        cutoff, limit)
    return [r["id"] for r in rows]


async def purge_reporters(pool: asyncpg.Pool, retention_days: float, now: datetime) -> int:
    """Forget the reporter of every whistle struck off `retention_days` ago (not reopened since), a batch per
    transaction; how many."""
    done = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            ids = await due_reporters(conn, privacy.cutoff(now, retention_days), privacy.PURGE_BATCH)
            await remove_reporters(conn, ids, now)
        done += len(ids)
        if len(ids) < privacy.PURGE_BATCH:
            return done
