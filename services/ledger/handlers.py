"""Ledger's handlers: project every event; record dead letters; answer queries."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from nats.aio.msg import Msg

from services.ledger import rates, store
from shared.contracts import Command, Event, Refusal, Reply
from shared.ids import utcnow
from shared.runtime import Poison, ServiceRuntime

_NS = uuid.UUID("6b1f5e0a-3c1d-4f7e-9a51-7a3f0b9c2d10")


@dataclass(frozen=True)
class DeadLetter:
    key: UUID
    service: str
    subject: str
    reason: str
    stream_seq: int | None
    body: bytes | None


@dataclass(frozen=True)
class MaxDeliveries:
    key: UUID
    stream: str
    consumer: str
    stream_seq: int
    deliveries: int


def parse_dead_letter(m: Msg) -> DeadLetter:
    h = m.headers or {}
    seq = m.metadata.sequence.stream if m.metadata else 0
    return DeadLetter(
        key=uuid.uuid5(_NS, f"deadletter:{seq}"), service=h.get("Whistle-Service", m.subject.rsplit(".", 1)[-1]),
        subject=h.get("Whistle-Subject", "?"), reason=h.get("Whistle-Reason", "unknown"),
        stream_seq=int(h["Whistle-Stream-Seq"]) if h.get("Whistle-Stream-Seq", "").isdigit() else None, body=m.data,
    )


def parse_advisory(m: Msg) -> MaxDeliveries:
    try:
        a = json.loads(m.data)
        return MaxDeliveries(
            key=uuid.uuid5(_NS, f"advisory:{a['stream']}:{a['consumer']}:{a['stream_seq']}"),
            stream=a["stream"], consumer=a["consumer"], stream_seq=int(a["stream_seq"]), deliveries=int(a["deliveries"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise Poison(f"bad advisory: {exc}") from exc


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def _period(payload: dict) -> rates.Period | Reply:
    """The period asked for, or a 422 naming the field."""
    try:
        return rates.period_from(payload.get("month"), payload.get("from"), payload.get("to"))
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

    async def on_dead_letter(self, conn: asyncpg.Connection, dl: DeadLetter, now: datetime):  # noqa: ARG002
        """Keep every dead-lettered message, with its reason, for the supervisor."""
        await store.record_dead_letter(conn, dl.key, dl.service, dl.subject, dl.reason, dl.stream_seq, dl.body)
        return []

    async def on_max_deliveries(self, conn: asyncpg.Connection, a: MaxDeliveries, now: datetime):  # noqa: ARG002
        """A message failed `max_deliver` times: fetch it by stream sequence and dead-letter it."""
        subject, body = "?", None
        try:
            raw = await self.runtime.nc.jetstream().get_msg(a.stream, a.stream_seq)
            subject, body = raw.subject, raw.data
        except Exception:  # already gone from the stream: keep the record anyway
            pass
        await store.record_dead_letter(
            conn, a.key, a.consumer.split("-", 1)[0], subject,
            f"failed {a.deliveries} deliveries to consumer {a.consumer}", a.stream_seq, body,
        )
        return []

    async def whistle(self, pool: asyncpg.Pool, cmd: Command) -> Reply:
        """A whistle with its summons and timeline."""
        whistle_id = _uuid(cmd.payload.get("id"))
        view = await store.whistle(pool, whistle_id) if whistle_id else None
        if view is None:
            return Reply(ok=False, refusal=Refusal(status=404, code="no_such_whistle", reason="no such whistle / 无此哨"))
        if cmd.actor.role == "responder" and not await store.responder_has_summons(pool, whistle_id, cmd.actor.id):
            return Reply(ok=False, refusal=Refusal(
                status=403, code="not_your_whistle", reason="you are not summoned to this whistle / 您未被派至此哨",
            ))
        return Reply.success(view)

    async def whistles(self, pool: asyncpg.Pool, cmd: Command) -> Reply:
        """The ledger of whistles (open ones by default)."""
        if cmd.actor.role == "responder":
            return Reply(ok=False, refusal=Refusal(status=403, code="forbidden", reason="dispatchers and supervisors only / 仅限调度员和督办"))
        status = cmd.payload.get("status")
        limit = min(int(cmd.payload.get("limit") or 100), 1000)
        return Reply.success(await store.whistles(pool, status, limit))

    async def open311(self, pool: asyncpg.Pool, cmd: Command) -> Reply:
        """Whistles for the Open311 GeoReport edge: by ids, or by categories, [start, end) and open / closed."""
        if cmd.actor.role not in ("system", "dispatcher", "supervisor"):
            return Reply.refuse(403, "forbidden", "the Open311 edge, dispatchers and supervisors only / 无权查询")
        p = cmd.payload
        try:
            begins = datetime.fromisoformat(p["start"]) if p.get("start") else datetime.min.replace(tzinfo=UTC)
            ends = datetime.fromisoformat(p["end"]) if p.get("end") else datetime.max.replace(tzinfo=UTC)
        except (TypeError, ValueError):
            return Reply.refuse(422, "bad_period", "start / end must be ISO 8601 with a time zone / 日期格式无效")
        if begins.tzinfo is None or ends.tzinfo is None:
            return Reply.refuse(422, "bad_period", "start / end need a time zone / 日期须带时区")
        ids = None
        if p.get("ids") is not None:
            ids = [u for u in (_uuid(i) for i in p["ids"]) if u is not None]
        status = p.get("status")
        if status not in (None, "open", "closed"):
            return Reply.refuse(422, "bad_status", "status is open or closed / 状态须为 open 或 closed", "status")
        categories = p.get("categories") or None
        limit = min(int(p.get("limit") or 1000), 1000)
        rows = await store.open311_requests(pool, ids, categories, begins, ends,
                                            None if status is None else status == "closed", limit)
        return Reply.success(rows)

    async def dead_letters(self, pool: asyncpg.Pool, cmd: Command) -> Reply:
        """Dead-lettered messages, newest first (supervisors)."""
        if cmd.actor.role != "supervisor":
            return Reply(ok=False, refusal=Refusal(status=403, code="supervisor_only", reason="supervisors only / 仅限督办"))
        return Reply.success(await store.dead_letters(pool, min(int(cmd.payload.get("limit") or 100), 1000)))

    async def rates(self, pool: asyncpg.Pool, cmd: Command) -> Reply:
        """The three rates (三率) of one responder, or of the community, over a month or dates."""
        unit = str(cmd.payload.get("unit") or rates.COMMUNITY)
        own = cmd.actor.role == "responder" and unit == cmd.actor.id
        if cmd.actor.role not in ("dispatcher", "supervisor") and not own:
            return Reply.refuse(403, "not_your_unit", "a responder sees only its own rates / 仅可查看本单位三率")
        period = _period(cmd.payload)
        if isinstance(period, Reply):
            return period
        facts = await store.rate_facts(pool, period, None if unit == rates.COMMUNITY else unit)
        return Reply.success(rates.compute(unit, facts, period, utcnow(), self.score_weights).as_dict())

    async def ranking(self, pool: asyncpg.Pool, cmd: Command) -> Reply:
        """Every responder by combined score, with the red (红榜) and black (黑榜) lists."""
        if cmd.actor.role not in ("dispatcher", "supervisor"):
            return Reply.refuse(403, "forbidden", "dispatchers and supervisors only / 仅限调度员和督办")
        period = _period(cmd.payload)
        if isinstance(period, Reply):
            return period
        facts = await store.rate_facts(pool, period, None)
        ranking = rates.rank(facts, period, utcnow(), self.score_weights)
        return Reply.success({**ranking.as_dict(), "weights": self.score_weights})
