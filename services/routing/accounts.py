"""Console sign-in accounts: routing owns the people (the responder registry), so it owns their passwords.

Two requests: a supervisor sets or resets passwords (`cmd.routing.password_set`), and the console
checks a sign-in (`cmd.routing.signin_check`). Wrong passwords are slowed down per user name, known
or not, and every refusal reads the same, so a caller cannot tell whether a name exists.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import structlog
from pwdlib import PasswordHash

from services.routing.payloads import AccountFilter, Known, SignIn
from shared import paging
from shared.commands import PasswordSet
from shared.contracts import Command, Reply
from shared.ids import utcnow

log = structlog.get_logger("routing.accounts")

FREE_FAILURES = 3  # typos happen: the first three wrong passwords cost nothing
FIRST_LOCK_S = 2.0  # then the lock doubles with each further failure…
MAX_LOCK_S = 15 * 60.0  # …up to a quarter of an hour
FORGET_AFTER = timedelta(hours=1)  # a name left alone this long starts afresh

_hasher = PasswordHash.recommended()  # argon2id with the library's current parameters
# verified against when the name is unknown, so an unknown name costs the same time as a known one
_DUMMY_HASH = _hasher.hash("whistle-no-such-account")

NOT_SIGNED_IN = "wrong user name or password / 用户名或密码错误"
DEACTIVATED = Reply.refuse(403, "deactivated", "this responder is deactivated: its people can no longer sign in;"
                           " ask a supervisor / 该单位已停用，其人员不能再登录，请联系主管")


async def deactivated(conn: asyncpg.Connection, role: str, subject_id: str) -> bool:
    """Whether a console account acts for a registry responder that is deactivated (its tokens and sessions
    stop working everywhere: a sign-in would give a session nobody honours)."""
    if role != "responder":
        return False
    return bool(await conn.fetchval(
        "SELECT NOT coalesce((data ->> 'active')::boolean, true) FROM responders WHERE id = $1", subject_id))


def lock_for(failures: int) -> float:
    """Seconds a user name stays locked after `failures` wrong passwords in a row (0: not locked)."""
    if failures <= FREE_FAILURES:
        return 0.0
    return min(MAX_LOCK_S, FIRST_LOCK_S * 2 ** (failures - FREE_FAILURES - 1))


@dataclass(frozen=True)
class Throttle:
    """The wrong-password record of one user name."""

    failures: int = 0
    last_failure: datetime | None = None
    locked_until: datetime | None = None

    def wait(self, now: datetime) -> float:
        """Seconds before this name may try again (0: now)."""
        if self.locked_until is None or self.locked_until <= now:
            return 0.0
        return (self.locked_until - now).total_seconds()

    def failed(self, now: datetime) -> Throttle:
        """The record after one more wrong password at `now`."""
        stale = self.last_failure is None or now - self.last_failure > FORGET_AFTER
        failures = 1 if stale else self.failures + 1
        seconds = lock_for(failures)
        return Throttle(failures, now, now + timedelta(seconds=seconds) if seconds else None)


async def held_throttle(conn: asyncpg.Connection, table: str, name: str) -> Throttle:
    """The name's record in `table` (signin_failures, signin_link_requests), with the name locked until
    the transaction ends (an advisory lock: an unknown name has no row to lock), so a burst of parallel
    tries cannot all slip in before the first is counted."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1 || ':' || $2))", table, name)
    row = await conn.fetchrow(f"SELECT failures, last_failure, locked_until FROM {table} WHERE username = $1", name)
    return Throttle(**dict(row)) if row else Throttle()


async def save_throttle(conn: asyncpg.Connection, table: str, name: str, t: Throttle) -> None:
    await conn.execute(
        f"INSERT INTO {table} (username, failures, last_failure, locked_until) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (username) DO UPDATE SET failures = $2, last_failure = $3, locked_until = $4",
        name, t.failures, t.last_failure, t.locked_until,
    )


class AccountHandlers:
    """Set passwords (supervisors) and check sign-ins (the console); `holder.registry` names the responders."""

    def __init__(self, holder):
        self.holder = holder

    async def set_password(self, conn: asyncpg.Connection, cmd: Command[PasswordSet], now: datetime):
        """Set or reset the password of one or more accounts (supervisors; the runner sets the demo ones)."""
        body = cmd.payload
        # the table, not this replica's copy: a responder added through another replica a moment ago counts
        wanted = [a.id or a.username for a in body.accounts if a.role == "responder"]
        registry = {r["id"] for r in await conn.fetch("SELECT id FROM responders WHERE id = ANY($1::text[])", wanted)}
        for i, a in enumerate(body.accounts):
            if a.role == "responder" and (a.id or a.username) not in registry:
                return Reply.refuse(422, "unknown_responder", "no such responder / 无此响应单位",
                                    f"accounts.{i}.id"), []
        hashed = await asyncio.to_thread(_hasher.hash, body.password)  # ~0.3 s of CPU: off the event loop
        await conn.executemany(
            "INSERT INTO accounts (username, role, subject_id, password_hash, updated_at, updated_by)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO UPDATE"
            " SET role = $2, subject_id = $3, password_hash = $4, updated_at = $5, updated_by = $6",
            [(a.username, a.role, a.id or a.username, hashed, now, str(cmd.actor)) for a in body.accounts],
        )
        # a reset lifts a lockout: the supervisor has just vouched for the person
        await conn.execute("DELETE FROM signin_failures WHERE username = ANY($1::text[])",
                           [a.username for a in body.accounts])
        log.info("accounts.password_set", accounts=len(body.accounts), by=str(cmd.actor))
        return Reply.success({"accounts": len(body.accounts)}), []

    async def check(self, pool: asyncpg.Pool, cmd: Command[SignIn]) -> Reply:
        """Check a console sign-in (the console): the account's role and id, 401 for a wrong name or
        password, 429 while locked, 403 for a deactivated responder's account (told only with the right
        password).

        A query, not a command: its refusals must still record the failure, and a refused command
        rolls its transaction back.
        """
        body = cmd.payload
        name = body.username.strip().lower()
        now = utcnow()
        async with pool.acquire() as conn, conn.transaction():  # one attempt per name at a time
            throttle = await held_throttle(conn, "signin_failures", name)
            if wait := throttle.wait(now):
                return _locked(wait)
            account = await conn.fetchrow(
                "SELECT role, subject_id, password_hash FROM accounts WHERE lower(username) = $1", name)
            stored = account["password_hash"] if account else _DUMMY_HASH
            good = await asyncio.to_thread(_hasher.verify, body.password, stored)
            if good and account is not None:
                if throttle.failures:
                    await conn.execute("DELETE FROM signin_failures WHERE username = $1", name)
                if await deactivated(conn, account["role"], account["subject_id"]):
                    return DEACTIVATED  # the right password: no failure counted
                return Reply.success({"role": account["role"], "id": account["subject_id"]})
            after = throttle.failed(now)
            await save_throttle(conn, "signin_failures", name, after)
        log.info("signin.refused", failures=after.failures, locked_s=lock_for(after.failures))
        if wait := after.wait(now):
            return _locked(wait)
        return Reply.refuse(401, "not_signed_in", NOT_SIGNED_IN)

    async def list(self, pool: asyncpg.Pool, cmd: Command[AccountFilter]) -> Reply:
        """The accounts by user name: role, whom each acts as, whether a password is set and any lockout
        (supervisors, for the people page), filtered by `q` (part of a name or id), `role` or `username`;
        `id` keeps those acting as one id (the notifier asks so)."""
        p = cmd.payload
        asked = paging.window(p.model_dump(include={"limit", "cursor"}), 100, paging.text)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        filters = p.model_dump(include={"id", "q", "role", "username"})
        rows = await pool.fetch(
            "SELECT a.username, a.role, a.subject_id, a.password_hash <> '' AS password_set, a.updated_at,"
            " a.updated_by, CASE WHEN f.locked_until > $6 THEN f.locked_until END AS locked_until"
            " FROM accounts a LEFT JOIN signin_failures f ON f.username = lower(a.username)"
            " WHERE ($1::text IS NULL OR a.subject_id = $1) AND ($2::text IS NULL OR a.role = $2)"
            " AND ($3::text IS NULL OR strpos(lower(a.username), lower($3)) > 0"
            " OR strpos(lower(a.subject_id), lower($3)) > 0)"
            " AND ($4::text IS NULL OR a.username > $4) AND ($7::text IS NULL OR lower(a.username) = lower($7))"
            " ORDER BY a.username LIMIT $5",
            filters["id"], filters["role"], filters["q"] or None, after[0] if after else None, limit + 1, utcnow(),
            filters["username"])
        iso = lambda v: v.isoformat() if v is not None else None  # noqa: E731
        items = [{"username": r["username"], "role": r["role"], "id": r["subject_id"],
                  "password_set": r["password_set"], "locked_until": iso(r["locked_until"]),
                  "updated_at": iso(r["updated_at"]), "updated_by": r["updated_by"]} for r in rows]
        return Reply.success(paging.page(items, limit, lambda r: (r["username"],)))


    async def known(self, pool: asyncpg.Pool, cmd: Command[Known]) -> Reply:
        """Whether an id names someone: a registry responder (active or not), or whom a console account acts
        as (the notifier asks before it keeps a contact rule). Read from the tables, as `set_password` does."""
        rid = cmd.payload.id
        row = await pool.fetchrow("SELECT EXISTS (SELECT FROM responders WHERE id = $1) AS responder,"
                                  " EXISTS (SELECT FROM accounts WHERE subject_id = $1) AS account", rid)
        return Reply.success({"id": rid, "responder": row["responder"], "account": row["account"]})


def _locked(wait: float) -> Reply:
    seconds = max(1, int(wait + 0.999))
    return Reply(ok=False, data={"retry_after_s": seconds}, refusal=Reply.refuse(
        429, "too_many_attempts",
        f"too many wrong passwords; try again in {seconds} s / 密码错误次数过多，请 {seconds} 秒后再试").refusal)
