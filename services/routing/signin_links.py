"""One-time sign-in links (发送登录链接): routing owns the accounts, so it makes and spends the links;
the notifier sends them on the person's own contact rule.

A request answers the same whether or not the name exists, at the same speed (the link goes out
after the answer), and is slowed per name like wrong passwords. Only a hash of the token is kept;
a link is spent once, by one UPDATE that finds it unused and unexpired.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import datetime, timedelta

import asyncpg
import structlog
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from services.routing.accounts import DEACTIVATED, deactivated, held_throttle, save_throttle
from services.routing.payloads import SigninLinkUse
from shared import subjects
from shared.commands import SigninLinkAsk
from shared.contracts import Actor, Command, Reply
from shared.ids import utcnow, uuid7

log = structlog.get_logger("routing.signin_links")

LINK_LIFE = timedelta(minutes=15)
SEND_TRIES = 3  # the notifier away or restarting: a link is worth a few seconds, no more
SYSTEM = Actor(role="system", id="routing")
SENT = "if that account exists, a sign-in link has been sent / 如账号存在，登录链接已发送"
SPENT = "this sign-in link has been used or has expired; ask for a new one / 此登录链接已使用或已过期，请重新获取"
UNKNOWN = "this is not a sign-in link / 登录链接无效"


def token_hash(token: str) -> bytes:
    """What the table keeps of a token: a leaked table signs no one in."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class SigninLinks:
    """`request` makes a link and has it sent; `use` spends one. `runtime.nc` reaches the notifier."""

    def __init__(self, runtime):
        self.runtime = runtime
        self._sending: set[asyncio.Task] = set()

    async def request(self, pool: asyncpg.Pool, cmd: Command[SigninLinkAsk]) -> Reply:
        """Send a sign-in link to the account's person, if the name exists; the same answer either way.

        A query (its own transaction): the request counts against the name whatever the answer.
        """
        name = cmd.payload.username.lower()
        now = utcnow()
        token = secrets.token_urlsafe(32)
        async with pool.acquire() as conn, conn.transaction():
            throttle = await held_throttle(conn, "signin_link_requests", name)
            if wait := throttle.wait(now):
                return _slow_down(wait)
            after = throttle.failed(now)
            await save_throttle(conn, "signin_link_requests", name, after)
            if wait := after.wait(now):  # as a wrong password: past the free ones, this one is refused too
                return _slow_down(wait)
            account = await conn.fetchrow("SELECT username, subject_id FROM accounts WHERE lower(username) = $1", name)
            link_id = uuid7()
            if account is not None:
                await conn.execute("DELETE FROM signin_links WHERE expires_at < $1", now - timedelta(days=1))
                await conn.execute(
                    "INSERT INTO signin_links (id, token_hash, username, created_at, expires_at)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    link_id, token_hash(token), account["username"], now, now + LINK_LIFE)
        log.info("signin_link.requested", requests=after.failures)  # neither the name's existence nor the token
        if account is not None:
            # after the answer, so a name that exists is not told apart by a slower one
            task = asyncio.create_task(self._send(link_id, account["subject_id"], token, now + LINK_LIFE))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return Reply.success({"message": SENT})

    async def _send(self, link_id, recipient: str, token: str, expires_at: datetime) -> None:
        body = self.runtime.signed(subjects.CMD_NOTIFIER_SIGNIN_LINK, SYSTEM, {
            "link_id": str(link_id), "recipient_id": recipient, "token": token, "expires_at": expires_at.isoformat()})
        for attempt in range(1, SEND_TRIES + 1):
            try:
                msg = await self.runtime.nc.request(subjects.CMD_NOTIFIER_SIGNIN_LINK, body, timeout=5.0)
                reply = Reply.model_validate_json(msg.data)
            except (NoRespondersError, NatsTimeout, asyncio.TimeoutError) as exc:
                log.warning("signin_link.notifier_away", link_id=str(link_id), attempt=attempt,
                            error=type(exc).__name__)
                await asyncio.sleep(attempt)
                continue
            log.info("signin_link.handed", link_id=str(link_id), recipient_id=recipient, ok=reply.ok,
                     notifications=(reply.data or {}).get("notifications") if reply.ok else None,
                     code=reply.refusal.code if reply.refusal else None)
            return
        log.error("signin_link.not_sent", link_id=str(link_id), recipient_id=recipient)

    async def use(self, pool: asyncpg.Pool, cmd: Command[SigninLinkUse]) -> Reply:
        """Spend a sign-in link (the console): the account's role and id, once; 410 when used or expired,
        400 when unknown.

        A query: spending is one UPDATE, which finds the link unused and unexpired or nothing.
        """
        hashed, now = token_hash(cmd.payload.token), utcnow()
        async with pool.acquire() as conn:
            spent = await conn.fetchrow(
                "UPDATE signin_links l SET used_at = $2 FROM accounts a"
                " WHERE l.token_hash = $1 AND l.used_at IS NULL AND l.expires_at > $2 AND a.username = l.username"
                " RETURNING l.id, a.username, a.role, a.subject_id", hashed, now)
            if spent is None:
                known = await conn.fetchval("SELECT true FROM signin_links WHERE token_hash = $1", hashed)
                log.info("signin_link.refused", known=bool(known))
                return Reply.refuse(410, "link_spent", SPENT) if known else Reply.refuse(400, "unknown_link", UNKNOWN)
            # as a right password does: the name starts afresh
            await conn.execute("DELETE FROM signin_link_requests WHERE username = $1", spent["username"].lower())
            if await deactivated(conn, spent["role"], spent["subject_id"]):
                return DEACTIVATED
        log.info("signin_link.used", link_id=str(spent["id"]), role=spent["role"])
        return Reply.success({"role": spent["role"], "id": spent["subject_id"], "username": spent["username"]})


def _slow_down(wait: float) -> Reply:
    seconds = max(1, int(wait + 0.999))
    return Reply(ok=False, data={"retry_after_s": seconds}, refusal=Reply.refuse(
        429, "too_many_requests",
        f"too many sign-in link requests; try again in {seconds} s / 登录链接申请过于频繁，请 {seconds} 秒后再试").refusal)
