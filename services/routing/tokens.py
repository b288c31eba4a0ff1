"""Revoked bearer tokens: routing owns the people (the registry, the accounts), so it owns the list.

Two commands change it: revoke one token by its jti (supervisors, or the token's own holder), and
revoke every token a responder was issued until now, a "not before" per responder (supervisors).
A deactivated responder (`PUT /v1/responders/{id}` with active=false) counts as revoked as a whole.
The gateways read the list (`qry.routing.token_revocations`) and keep it in memory.

Telling them: triggers NOTIFY on every change (migration 008) when its transaction commits, a
revocation, a "not before" or a responder deactivated or active again, however it was written; each
routing replica LISTENs and publishes `routing.tokens.changed` on core NATS, and every gateway
reads the list again at once. A notice lost (Postgres or NATS away) is covered by the gateways'
periodic reads, and by the notice every replica publishes as it starts listening again.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

import asyncpg
import structlog

from services.routing.payloads import ResponderRef, TokenRevoke
from shared import subjects
from shared.contracts import Command, Reply

log = structlog.get_logger("routing.tokens")
CHANNEL = "whistle_tokens"  # what the triggers NOTIFY on
KEEP_EXPIRED = timedelta(days=1)  # a revoked token is forgotten a day after it would have expired anyway


class TokenHandlers:
    """The revocation commands and the gateways' read of the whole list."""

    async def revoke(self, conn: asyncpg.Connection, cmd: Command[TokenRevoke], now: datetime):
        """Revoke one bearer token by its id (supervisors, or whoever the token names: signing out)."""
        p, actor = cmd.payload, cmd.actor
        if actor.role != "supervisor" and (actor.role, actor.id) != (p.role, p.subject_id):
            return Reply.refuse(403, "forbidden", "supervisors, or the token's own holder / 仅限督办或令牌持有人"), []
        await conn.execute(
            "INSERT INTO revoked_tokens (jti, subject, expires_at, revoked_at, revoked_by) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (jti) DO NOTHING", p.jti, f"{p.role}:{p.subject_id}", p.expires_at, now, str(actor))
        log.info("tokens.revoked", jti=p.jti, subject=f"{p.role}:{p.subject_id}", by=str(actor))
        return Reply.success({"jti": p.jti, "revoked": True, "expires_at": p.expires_at.isoformat()}), []

    async def revoke_responder(self, conn: asyncpg.Connection, cmd: Command[ResponderRef], now: datetime):
        """Revoke every token a responder was issued until now, and end its console sessions (supervisors);
        a token issued afterwards works."""
        responder_id = cmd.payload.id
        # the table, not this replica's copy: a responder added through another replica a moment ago counts
        if not await conn.fetchval("SELECT EXISTS (SELECT FROM responders WHERE id = $1)", responder_id):
            return Reply.refuse(404, "no_such_responder", "no such responder / 无此响应单位"), []
        not_before = await conn.fetchval(
            "INSERT INTO token_floors (responder_id, not_before, revoked_at, revoked_by) VALUES ($1, $2, $2, $3)"
            " ON CONFLICT (responder_id) DO UPDATE SET not_before = greatest(token_floors.not_before, $2),"
            " revoked_at = $2, revoked_by = $3 RETURNING not_before", responder_id, now, str(cmd.actor))
        log.info("tokens.responder_revoked", responder=responder_id, by=str(cmd.actor))
        return Reply.success({"responder_id": responder_id, "not_before": not_before.isoformat()}), []

    async def revocations(self, pool: asyncpg.Pool, cmd: Command) -> Reply:  # noqa: ARG002
        """The whole list, for the gateways: revoked tokens not yet expired, each responder's "not before"
        (seconds since the epoch) and the deactivated responders."""
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            jtis = await conn.fetch("SELECT jti FROM revoked_tokens WHERE expires_at > now()")
            floors = await conn.fetch("SELECT responder_id, extract(epoch FROM not_before)::float8 AS at"
                                      " FROM token_floors")
            inactive = await conn.fetch(
                "SELECT id FROM responders WHERE NOT coalesce((data ->> 'active')::boolean, true)")
        return Reply.success({"jtis": [r["jti"] for r in jtis],
                              "not_before": {r["responder_id"]: r["at"] for r in floors},
                              "inactive": [r["id"] for r in inactive]})

    async def forget_expired(self, rt) -> None:
        """Revoked tokens long expired are dead anyway: the list the gateways read stays small."""
        await rt.pool.execute("DELETE FROM revoked_tokens WHERE expires_at < now() - $1::interval", KEEP_EXPIRED)


class TokenNotices:
    """Publishes `routing.tokens.changed` on core NATS for every committed change the triggers NOTIFY."""

    def __init__(self) -> None:
        self._conn: asyncpg.Connection | None = None
        self._rt = None
        self._pending: set[asyncio.Task] = set()

    async def keep_listening(self, rt) -> None:
        """Every second: a LISTEN connection of its own, opened again after Postgres went away."""
        self._rt = rt
        if self._conn is not None and not self._conn.is_closed():
            return
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=1)
            self._conn = None
        conn = await asyncpg.connect(rt.settings.database_url, timeout=5,
                                     server_settings={"application_name": "whistle-routing-tokens"})
        try:
            await conn.add_listener(CHANNEL, self._notified)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        await self.publish()  # whatever changed while nobody here listened: the gateways read the list again

    def _notified(self, _conn, _pid, _channel, _payload) -> None:
        task = asyncio.get_running_loop().create_task(self.publish())
        self._pending.add(task)  # kept until done: a task nobody holds may be collected before it runs
        task.add_done_callback(self._pending.discard)

    async def publish(self) -> None:
        if self._rt is None:
            return
        try:
            await self._rt.nc.publish(subjects.ROUTING_TOKENS_CHANGED, b"{}")
        except Exception as exc:  # noqa: BLE001 — NATS away: the gateways read the list again on reconnect
            log.warning("tokens.notice_failed", error=repr(exc))

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=1)
