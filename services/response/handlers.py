"""Response's handlers."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from services.response import domain, store
from services.response.payloads import FollowUpAnswer, FollowUpLink, SummonsPage, WhistleFollowUpLink
from shared import paging, telemetry
from shared.commands import ExtensionDecision, ExtensionRequest, SummonsAction, VerifyWhistle
from shared.contracts import Command, Refusal, Reply, SummonsIssued
from shared.ids import utcnow


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


def _refused(r: Refusal) -> tuple[Reply, list]:
    return Reply(ok=False, refusal=r), []


async def on_summons_issued(conn: asyncpg.Connection, issued: list[SummonsIssued], now: datetime):  # noqa: ARG001
    """Open a summons for each responder routing chose, a batch at a time."""
    await store.add_summons(conn, issued)
    return []


async def act(conn: asyncpg.Connection, cmd: Command[SummonsAction], now: datetime):
    """A responder moves its own summons on: reports (报到), arrives on site, resolves; waits on the resident
    (pause / resume); returns it (退单) or transfers it (转派)."""
    move = cmd.payload
    found = await _lock(conn, move.summons_id)
    if isinstance(found, Refusal):
        return _refused(found)
    summons, _ = found
    outcome = domain.decide(summons, move.action, cmd.actor, now, move.note, **move.details())
    if isinstance(outcome, Refusal):
        return _refused(outcome)
    if move.action in domain.WAITS:
        waiting = domain.WAIT_TRANSITIONS[(summons.waiting, move.action)]
        await store.set_state(conn, summons.id, now, waiting=waiting)
        return Reply.success({"id": str(summons.id), "state": summons.state.value, "waiting": waiting}), outcome
    new_state = domain.TRANSITIONS[(summons.state, move.action)]
    t = await store.set_state(conn, summons.id, now, state=new_state, waiting=False)
    telemetry.RESPONSE_LATENCY.labels(new_state.value, t["tier"], t["responder_kind"]).observe(
        (now - t["issued_at"]).total_seconds()
    )
    return Reply.success({"id": str(summons.id), "state": new_state.value, "waiting": False}), outcome


async def _lock(conn: asyncpg.Connection, summons_id: str):
    """The summons locked, with its pending extension: (summons, extension), or the 404."""
    uuid = _uuid(summons_id)
    found = await store.lock_summons(conn, uuid) if uuid else None
    if found is None:
        return Refusal(status=404, code="no_such_summons", reason="no such summons / 派单不存在")
    return found


async def request_extension(conn: asyncpg.Connection, cmd: Command[ExtensionRequest], now: datetime):
    """延期: the responder asks for a later deadline, with a reason."""
    body = cmd.payload
    found = await _lock(conn, body.summons_id)
    if isinstance(found, Refusal):
        return _refused(found)
    summons, _ = found
    outcome = domain.request_extension(summons, body.clock, body.new_deadline, body.reason, cmd.actor, now)
    if isinstance(outcome, Refusal):
        return _refused(outcome)
    pending = {"clock": body.clock, "new_deadline": body.new_deadline.isoformat(), "reason": body.reason}
    await store.set_state(conn, summons.id, now, extension=pending)
    return Reply.success({"id": str(summons.id), "extension": {**pending, "status": "pending"}}), outcome


async def decide_extension(conn: asyncpg.Connection, cmd: Command[ExtensionDecision], now: datetime):
    """A supervisor grants or refuses a pending extension."""
    body = cmd.payload
    found = await _lock(conn, body.summons_id)
    if isinstance(found, Refusal):
        return _refused(found)
    summons, pending = found
    grant = body.decision == "grant"
    new_deadline = datetime.fromisoformat(pending["new_deadline"]) if pending else None
    outcome = domain.decide_extension(summons, grant, new_deadline, cmd.actor, now, body.note)
    if isinstance(outcome, Refusal):
        return _refused(outcome)
    await store.set_state(conn, summons.id, now, extension=None)
    decided = {"clock": pending["clock"], "new_deadline": pending["new_deadline"], "status": "granted" if grant else "refused"}
    return Reply.success({"id": str(summons.id), "extension": decided}), outcome


async def verify(conn: asyncpg.Connection, cmd: Command[VerifyWhistle], now: datetime, *, link_secret: str):
    """The dispatcher verifies the fix; the whistle is struck off the ledger (挂账销号)."""
    body = cmd.payload
    whistle_id = _uuid(body.whistle_id)
    found = await store.lock_whistle(conn, whistle_id) if whistle_id else None
    if found is None:
        # routing has not summoned anyone yet, or the id is unknown
        return _refused(Refusal(status=409, code="not_dispatched", reason="no summons for this whistle yet / 尚未派单")) \
            if whistle_id else _refused(Refusal(status=404, code="no_such_whistle", reason="no such whistle / 无此哨"))
    outcome = domain.verify(whistle_id, found.closed, found.states, cmd.actor, now, body.note, body.photo_url)
    if isinstance(outcome, Refusal):
        return _refused(outcome)
    await store.close_whistle(conn, whistle_id, now)
    token = await store.new_follow_up_link(conn, whistle_id, now, link_secret)
    # the dispatcher hands this link to the resident (the notifier texts it when they agreed); answered once
    return Reply.success({"id": str(whistle_id), "status": "closed", "follow_up_link": f"/r/{token}"}), outcome


async def count_summons(runtime) -> None:
    """Summons by state, for the supervisors' dashboard."""
    for state, n in (await store.count_by_state(runtime.pool)).items():
        telemetry.SUMMONS.labels(state).set(n)


async def follow_up(conn: asyncpg.Connection, cmd: Command[FollowUpAnswer], now: datetime, *, link_ttl_s: float):
    """回访: record the resident's answer, once per closure (a second one is refused with 409, whoever sends
    it); not solved or dissatisfied reopens the whistle (重办), and its next closure is asked again.

    A dispatcher names the whistle; a resident answers through its one-time link, which names it."""
    body = cmd.payload
    if cmd.actor.role == "resident":  # through a one-time link: the link names the whistle
        link = await store.lock_follow_up_link(conn, body.token) if body.token else None
        if link is None:
            return _refused(Refusal(status=404, code="no_such_link", reason="this link is not valid / 链接无效"))
        if refusal := domain.link_refusal(link["created_at"], link["used_at"], link["closed"], link["latest"], now,
                                          link_ttl_s):
            return _refused(refusal)
        await store.use_follow_up_link(conn, body.token, now)
        whistle_id = link["whistle_id"]
    else:
        whistle_id = _uuid(body.whistle_id) if body.whistle_id else None
    found = await store.lock_whistle(conn, whistle_id) if whistle_id else None
    if found is None:
        return _refused(Refusal(status=404, code="no_such_whistle", reason="no such whistle / 无此哨"))
    lead = await store.resolved_lead(conn, whistle_id)
    outcome = domain.follow_up(whistle_id, found.closed, lead, body.solved, body.satisfaction, cmd.actor, now,
                               body.note, followed_up=found.followed_up)
    if isinstance(outcome, Refusal):
        return _refused(outcome)
    await store.followed_up(conn, whistle_id, now)
    reopened = len(outcome) > 1
    if reopened:
        await store.reopen_whistle(conn, whistle_id)
    return Reply.success({"id": str(whistle_id), "status": "reopened" if reopened else "closed"}), outcome


async def follow_up_link(pool: asyncpg.Pool, cmd: Command[FollowUpLink], *, link_ttl_s: float) -> Reply:
    """What a resident's link is about, and whether it can still be answered (410 once expired or reopened)."""
    link = await store.follow_up_link(pool, cmd.payload.token)
    if link is None:
        return Reply(ok=False, refusal=Refusal(status=404, code="no_such_link", reason="this link is not valid / 链接无效"))
    refusal = domain.link_refusal(link["created_at"], link["used_at"], link["closed"], link["latest"], utcnow(),
                                  link_ttl_s)
    if refusal is not None and refusal.status == 410:
        return Reply(ok=False, refusal=refusal)
    return Reply.success({
        # answered through this link, or this closure's follow-up was recorded otherwise (by a dispatcher)
        "whistle_id": str(link["whistle_id"]), "answered": link["used_at"] is not None or link["followed_up"],
        "question": "Was your problem solved, and how satisfied are you? / 您反映的问题解决了吗？您是否满意？",
        "satisfaction": ["satisfied", "basically_satisfied", "dissatisfied"],
    })


async def follow_up_token(pool: asyncpg.Pool, cmd: Command[WhistleFollowUpLink], *, link_secret: str,
                          link_ttl_s: float) -> Reply:
    """The whistle's open follow-up link, for the notifier to text the resident (system callers only)."""
    whistle_id = _uuid(cmd.payload.whistle_id)
    link = await store.latest_follow_up_link(pool, whistle_id) if whistle_id else None
    if link is None or link["nonce"] is None:
        return Reply.refuse(404, "no_such_link", "no follow-up link for this whistle / 该哨无回访链接")
    if link["used_at"] is not None or link["followed_up"] or not link["closed"]:
        return Reply.refuse(409, "already_answered", "the follow-up was answered, or the whistle reopened / 已回访或已重办")
    if (utcnow() - link["created_at"]).total_seconds() >= link_ttl_s:  # nobody texts a dead link
        return Reply.refuse(410, "link_expired", "the follow-up link has expired / 回访链接已过期")
    return Reply.success({"whistle_id": str(whistle_id), "token": store.link_token(link_secret, link["nonce"])})


async def list_summons(pool: asyncpg.Pool, cmd: Command[SummonsPage]) -> Reply:
    """The caller's own summons (a responder sees only its own), a page at a time, newest first."""
    asked = paging.window(cmd.payload.model_dump(), 100, paging.aware, paging.uuid)
    if isinstance(asked, Reply):
        return asked
    limit, after = asked
    responder_id = cmd.actor.id if cmd.actor.role == "responder" else None
    rows = await store.list_summons(pool, responder_id, limit + 1, after)
    return Reply.success(paging.page(rows, limit, lambda r: (r["issued_at"], r["id"])))
