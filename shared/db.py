"""Postgres plumbing: one schema per service, ordered migrations, outbox and inbox."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from shared import priority, telemetry
from shared.contracts import Event

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
SHARED_MIGRATIONS = Path(__file__).parent / "migrations"


def _schema(name: str) -> str:
    if not _SCHEMA_RE.match(name):
        raise ValueError(f"bad schema name {name!r}")
    return name


async def create_pool(dsn: str, schema: str, *, min_size: int = 1, max_size: int = 8, nice: int = 0) -> asyncpg.Pool:
    """A pool whose connections see only the service's own schema (search_path); with `nice`, each
    connection's Postgres backend gets the service's CPU priority where it runs on this host."""
    await ensure_schema(dsn, schema)
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": _schema(schema), "application_name": f"whistle-{schema}"},
        init=functools.partial(_init_connection, nice=nice, service=schema),
        connection_class=CountedConnection,
        reset=_keep_session,
    )


async def _keep_session(conn: asyncpg.Connection) -> None:  # noqa: ARG001
    """What a connection needs going back to the pool beyond asyncpg's own rollback of an open transaction:
    nothing. No code here changes its session (no SET; advisory locks are `_xact_` ones; the
    relay's session lock goes with its connection, closed when it stops leading), so the
    default reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) was a round trip per transaction
    for nothing."""


async def _init_connection(conn: asyncpg.Connection, nice: int = 0, service: str | None = None) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    if service is not None and isinstance(conn, CountedConnection):
        conn.statements = telemetry.DB_STATEMENTS.labels(service)
    if nice:
        renice_backend(await conn.fetchval("SELECT pg_backend_pid()"), nice)


def _counted(name: str):
    """`asyncpg.Connection.<name>`, counting one statement before it runs."""
    send = getattr(asyncpg.Connection, name)

    async def counted(self: CountedConnection, *args, **kwargs):
        if self.statements is not None:
            self.statements.inc()
        return await send(self, *args, **kwargs)

    counted.__name__ = counted.__qualname__ = name
    return counted


class CountedConnection(asyncpg.Connection):
    """A connection that counts the statements it sends (`whistle_db_statements_total`), each a round trip:
    BEGIN and COMMIT too (a transaction sends them through `execute`), an `executemany` once. Not asyncpg's
    query logger: that schedules a callback per statement, measured at ~20 µs each against ~1.5 µs here."""

    statements = None  # the service's counter, set when the pool starts the connection

    execute = _counted("execute")
    executemany = _counted("executemany")
    fetch = _counted("fetch")
    fetchval = _counted("fetchval")
    fetchrow = _counted("fetchrow")


def renice_backend(pid: int, nice: int) -> bool:
    """Lower the CPU priority of a Postgres backend if it is a process of this host (embedded or
    local Postgres run by the same user); elsewhere (another host or container) it is left alone."""
    if not priority.named(pid, b"postgres"):
        return False  # that pid is not a Postgres backend here: the server is elsewhere
    return priority.lower(pid, nice)


async def ensure_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        # concurrent CREATE SCHEMA IF NOT EXISTS can race; an advisory lock serialises it
        # a service's own role may not create schemas (deploy/postgres/roles.sql made its schema)
        if await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(7262001)")
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_schema(schema)}")
    finally:
        await conn.close()


async def migrate(pool: asyncpg.Pool, directories: Iterable[Path]) -> list[str]:
    """Apply `NNN_name.sql` files in order (shared ones first), once each; returns what ran."""
    applied: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for directory in directories:
            for path in sorted(directory.glob("*.sql")):
                key = f"{directory.parent.name}/{path.name}"
                if key in done:
                    continue
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", key)
                applied.append(key)
    return applied


@dataclass(frozen=True)
class OutboxMessage:
    """A message that is not a domain event (a clock's schedule), queued like one."""

    subject: str
    body: bytes
    msg_id: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, event: Event) -> OutboxMessage:
        """An event serialised now, to be queued later as it is (work done ahead of a deadline)."""
        return cls(event.published_subject, event.model_dump_json().encode(), str(event.event_id))


@dataclass(frozen=True, slots=True)
class Queued:
    """An outbox row as written: what the relay publishes (headers with Nats-Msg-Id), and its seq."""

    seq: int
    subject: str
    body: bytes
    headers: dict[str, str]


async def write_outbox(conn: asyncpg.Connection, messages: Iterable[Event | OutboxMessage]) -> list[Queued]:
    """Queue events and messages for the relay, inside the caller's transaction (one statement). Returns
    the rows, with their seq, to hand the relay once the transaction has committed
    (`OutboxRelay.handoff`): it publishes them from memory rather than reading them back, or forwards them
    to the replica whose relay leads.
    """
    queued = [
        (m.subject, m.headers, m.body, m.msg_id) if isinstance(m, OutboxMessage)
        else (m.published_subject, {}, m.model_dump_json().encode(), str(m.event_id))
        for m in messages
    ]
    if not queued:
        return []
    # one round trip: unnest keeps the handlers' order (the relay publishes by seq), and a
    # data-modifying WITH runs once whatever the outer SELECT reads; headers travel as text
    # (an array parameter would take a dict for a nested array)
    columns = ([q[0] for q in queued], [json.dumps(q[1]) if q[1] else "{}" for q in queued],
               [q[2] for q in queued], [q[3] for q in queued])
    # the sequence numbers rows in the order unnest gives them: sorted seqs match the list
    seqs = sorted(r[0] for r in await conn.fetch(_QUEUE_RETURNING, *columns))
    return [Queued(seq, subject, body, {"Nats-Msg-Id": msg_id, **headers})
            for seq, (subject, headers, body, msg_id) in zip(seqs, queued, strict=True)]


_QUEUE = (
    "INSERT INTO outbox (subject, headers, body, msg_id)"
    " SELECT s, h::jsonb, b, i FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) AS u(s, h, b, i)"
)
_QUEUE_RETURNING = f"{_QUEUE} RETURNING seq"


async def claim_inbox(conn: asyncpg.Connection, event_id) -> bool:
    """Record an incoming event as processed; False if it already was (a redelivery)."""
    row = await conn.fetchval(
        "INSERT INTO inbox (event_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true", event_id
    )
    return bool(row)


async def claim_inbox_many(conn: asyncpg.Connection, event_ids: list) -> set:
    """Record a batch of incoming events as processed; returns the ids not seen before."""
    if not event_ids:
        return set()
    rows = await conn.fetch(
        "INSERT INTO inbox (event_id) SELECT DISTINCT unnest($1::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id",
        event_ids,
    )
    return {r["event_id"] for r in rows}
