"""Ledger's handlers: project every event; answer queries (dead letters: dead_letter_handlers.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from services.ledger import rates, store
from services.ledger.payloads import AuditAsk, Open311Query, PeriodAsk, RatesAsk, WhistleList, WhistleRef
from shared import paging, privacy, subjects
from shared.contracts import Command, Event, Refusal, Reply
from shared.ids import utcnow
from shared.runtime import ServiceRuntime
from shared.validation import public_text

BOARD_CHANGED_CHUNK = 500  # whistle ids per announcement


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def _seq(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("a timeline position is a number")
    return value


async def purge_reporters(pool: asyncpg.Pool, retention_days: float, now: datetime | None = None) -> int:
    """Forget the reporter of every whistle struck off `retention_days` ago and closed still, a batch per
    transaction; how many."""
    now = now or utcnow()
    done = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            ids = await store.due_reporters(conn, privacy.cutoff(now, retention_days), privacy.PURGE_BATCH)
            await store.remove_reporters(conn, ids, privacy.RETENTION, now)
        done += len(ids)
        if len(ids) < privacy.PURGE_BATCH:
            return done


def _period(asked: PeriodAsk) -> rates.Period | Reply:
    """The period asked for, or a 422 naming the field."""
    try:
        return rates.period_from(asked.month, asked.from_, asked.to)
    except rates.PeriodError as exc:
        return Reply.refuse(422, "bad_period", str(exc), exc.field)


class LedgerHandlers:
    def __init__(self, runtime: ServiceRuntime, score_weights: dict[str, float] | None = None):
        self.runtime = runtime
        self.score_weights = rates.check_weights(score_weights or rates.DEFAULT_WEIGHTS)

    async def on_events(self, conn: asyncpg.Connection, events: list[Event], now: datetime):  # noqa: ARG002
        """Project every domain event into the timeline and the views, a batch at a time."""
        await store.project_many(conn, events)
        return []

    async def board_changed(self, events: list[Event]) -> None:
        """After a batch commits: announce the whistles whose board rows it may have changed (core NATS,
        fire and forget; the console's live board fetches them then, so the rows are always in place)."""
        ids = sorted({str(e.whistle_id) for e in events if not e.subject.startswith("notification.")})
        for start in range(0, len(ids), BOARD_CHANGED_CHUNK):
            await self.runtime.nc.publish(subjects.LEDGER_BOARD_CHANGED,
                                          json.dumps({"whistle_ids": ids[start:start + BOARD_CHANGED_CHUNK]}).encode())

    async def whistle(self, pool: asyncpg.Pool, cmd: Command[WhistleRef]) -> Reply:
        """A whistle with its summons and timeline (a responder: only one it is summoned to)."""
        whistle_id = _uuid(cmd.payload.id)
        view = await store.whistle(pool, whistle_id) if whistle_id else None
        if view is None:
            return Reply(ok=False, refusal=Refusal(status=404, code="no_such_whistle", reason="no such whistle / 无此哨"))
        if cmd.actor.role == "responder" and not await store.responder_has_summons(pool, whistle_id, cmd.actor.id):
            return Reply(ok=False, refusal=Refusal(
                status=403, code="not_your_whistle", reason="you are not summoned to this whistle / 您未被派至此哨",
            ))
        return Reply.success(view)

    async def whistles(self, pool: asyncpg.Pool, cmd: Command[WhistleList]) -> Reply:
        """The ledger of whistles (open ones by default)."""
        asked = paging.window(cmd.payload.page, 100, paging.aware_or_none, paging.uuid)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        rows = await store.whistles(pool, cmd.payload.status, limit + 1, after)
        return Reply.success(paging.page(rows, limit, lambda r: (r["raised_at"], r["id"])))

    async def open311(self, pool: asyncpg.Pool, cmd: Command[Open311Query]) -> Reply:
        """Whistles for the Open311 GeoReport edge: by ids, or by categories, [start, end) and open / closed."""
        p = cmd.payload
        try:
            begins = datetime.fromisoformat(p.start) if p.start else datetime.min.replace(tzinfo=UTC)
            ends = datetime.fromisoformat(p.end) if p.end else datetime.max.replace(tzinfo=UTC)
        except (TypeError, ValueError):
            return Reply.refuse(422, "bad_period", "start / end must be ISO 8601 with a time zone / 日期格式无效")
        if begins.tzinfo is None or ends.tzinfo is None:
            return Reply.refuse(422, "bad_period", "start / end need a time zone / 日期须带时区")
        ids = None
        if p.ids is not None:
            ids = [u for u in (_uuid(i) for i in p.ids) if u is not None]
        status = p.status
        if status not in (None, "open", "closed"):
            return Reply.refuse(422, "bad_status", "status is open or closed / 状态须为 open 或 closed", "status")
        categories = p.categories or None
        asked = paging.window(p.page, 1000, paging.aware, paging.uuid)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        rows = await store.open311_requests(pool, ids, categories, begins, ends,
                                            None if status is None else status == "closed", limit + 1, after)
        names = {row["id"]: row.pop("names") for row in rows}  # what the free text is masked against: kept here
        page = paging.page(rows, limit, lambda r: (r["raised_at"], r["id"]))
        for row in page["items"]:  # the free text as anyone may read it (masking never lengthens it)
            row["description"] = public_text(row["description"], names[row["id"]])
            row["attachments"] = [public_text(a, names[row["id"]]) for a in row["attachments"] or ()]
        return Reply.success(page)

    async def audit(self, pool: asyncpg.Pool, cmd: Command[AuditAsk]) -> Reply:
        """The audit of a month (supervisors): each event's time, whistle, type and who caused it (role, id),
        oldest first, a page at a time."""
        p = cmd.payload
        period = _period(PeriodAsk(month=p.month))
        if isinstance(period, Reply):
            return period
        asked = paging.window(p.page, 1000, paging.aware, _seq)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        rows = await store.audit(pool, period.begins, period.ends, not p.system, limit + 1, after)
        page = paging.page(rows, limit, lambda r: (r["at"], r["seq"]))
        for row in page["items"]:
            del row["seq"]
        return Reply.success(page)

    async def rates(self, pool: asyncpg.Pool, cmd: Command[RatesAsk]) -> Reply:
        """The three rates (三率) of one responder, or of the community, over a month or dates (a responder:
        its own only)."""
        unit = cmd.payload.unit
        if cmd.actor.role == "responder" and unit != cmd.actor.id:
            return Reply.refuse(403, "not_your_unit", "a responder sees only its own rates / 仅可查看本单位三率")
        period = _period(cmd.payload)
        if isinstance(period, Reply):
            return period
        facts = await store.rate_facts(pool, period, None if unit == rates.COMMUNITY else unit)
        return Reply.success(rates.compute(unit, facts, period, utcnow(), self.score_weights).as_dict())

    async def ranking(self, pool: asyncpg.Pool, cmd: Command[PeriodAsk]) -> Reply:
        """Every responder by combined score, with the red (红榜) and black (黑榜) lists."""
        period = _period(cmd.payload)
        if isinstance(period, Reply):
            return period
        facts = await store.rate_facts(pool, period, None)
        ranking = rates.rank(facts, period, utcnow(), self.score_weights)
        return Reply.success({**ranking.as_dict(), "weights": self.score_weights})
