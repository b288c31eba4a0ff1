"""Intake's handlers: parse, call the domain, save, write the outbox."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import asdict
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from services.intake import classes, domain, hotline, store
from shared import paging, telemetry
from shared.contracts import Command, Event, Refusal, Reply, Source, WhistleBlown

MAX_IMPORT_ROWS = 1000  # per request: a NATS message stays under its 1 MB limit; the CLI sends chunks


class IntakeHandlers:
    def __init__(self, catalogue: dict[str, domain.Category], class_window: timedelta = timedelta(days=30),
                 class_threshold: int = 5):
        self.catalogue = catalogue
        self.class_window = class_window
        self.class_threshold = class_threshold
        self.hotline_mapping = hotline.load_mapping()

    async def import_orders(self, conn: asyncpg.Connection, cmd: Command, now: datetime):
        """接诉即办: a batch of 12345 work orders; all or nothing unless `partial`, idempotent by order id."""
        if cmd.actor.role not in ("dispatcher", "supervisor"):
            return Reply.refuse(403, "forbidden", "only dispatchers import work orders / 只有调度员可以导入工单"), []
        rows, first_row = cmd.payload.get("rows"), cmd.payload.get("first_row", 1)
        if not isinstance(rows, list) or not rows or len(rows) > MAX_IMPORT_ROWS or not isinstance(first_row, int):
            return Reply.refuse(422, "invalid", f"rows: a list of 1–{MAX_IMPORT_ROWS} work orders / 每批1–"
                                f"{MAX_IMPORT_ROWS}条", "rows"), []
        orders, errors = hotline.check_rows(rows, first_row, self.hotline_mapping, set(self.catalogue))
        failed = [e.as_dict() for e in errors]
        if errors and not cmd.payload.get("partial"):
            return Reply(ok=False, data={"failed": failed}, refusal=Refusal(
                status=422, code="invalid_rows", field="rows",
                reason=f"{len(errors)} of {len(rows)} rows are invalid; nothing was imported / 有无效行，未导入")), []
        # imports run one at a time (requests are answered concurrently, and intake may run twice):
        # two imports of the same file must not both find an order new
        await store.lock_imports(conn)
        known = await store.imported_orders(conn, [o.external_id for o in orders])
        fresh = [o for o in orders if o.external_id not in known]
        events: list[Event] = []
        if not cmd.payload.get("dry_run"):
            for order in fresh:
                blown = domain.blow(order.whistle, self.catalogue, str(cmd.actor), now)
                await store.save_whistle(conn, blown, order.whistle)
                await store.remember_order(conn, order.external_id, blown.whistle_id, order.received_at, now)
                telemetry.WHISTLES.labels(blown.source.value, blown.category, blown.tier.value).inc()
                events.append(blown)  # grouped into its problem class by `group`, like any whistle
        summary = {"rows": len(rows), "imported": 0 if cmd.payload.get("dry_run") else len(fresh),
                   "unchanged": len(orders) - len(fresh), "failed": failed, "dry_run": bool(cmd.payload.get("dry_run"))}
        return Reply.success(summary), events

    async def group(self, conn: asyncpg.Connection, whistles: list[WhistleBlown], now: datetime) -> list[Event]:  # noqa: ARG002
        """一个诉求解决一类问题: attach each blown whistle to its problem class; at the threshold, raise one.

        Off the blow request path: intake consumes its own `whistle.blown` events (native, Open311,
        12345 imports alike), a fetched batch at a time, in stream order. Replicas (each with its own
        partitions of whistles) take a lock per category first, so two whistles never decide on the same
        class at once. The classes the batch may join are then read once, decided in memory in order,
        and written back set-based. A
        redelivery is dropped by the runtime's inbox; a replayed stream by `grouped_among`. Everything
        counts from when each whistle was blown, and its events carry that time, as when grouping ran
        inside the blow (routing reacts to the same event concurrently, so the ledger may receive its
        events before or after these).
        """
        complaints = [w for w in whistles if w.source != Source.proactive]  # the class's own whistle is not one
        if complaints:
            await store.lock_categories(conn, {w.category for w in complaints})
            already = await store.grouped_among(conn, [w.whistle_id for w in complaints])
            complaints = [w for w in complaints if w.whistle_id not in already]
        if not complaints:
            return []
        since = min(w.occurred_at for w in complaints) - self.class_window
        by_category: dict[str, dict] = {}
        for c in await store.candidate_classes(conn, complaints, since):
            by_category.setdefault(c.category, {})[c.id] = c
        changed: dict = {}
        members, proactive, events = [], [], []
        for w in complaints:
            at = w.occurred_at  # the window counts from when the whistles were blown
            known = by_category.setdefault(w.category, {})
            decision = classes.assign(known.values(), w, at, self.class_window, self.class_threshold)
            c = known[decision.problem_class.id] = changed[decision.problem_class.id] = decision.problem_class
            members.append((c.id, w.whistle_id, at))
            if decision.proactive:
                proactive.append(decision.proactive)
            events += decision.events
        for p in proactive:  # intake owns it like any other whistle (saved before the class names it)
            await store.save_whistle(conn, p, None)
            telemetry.WHISTLES.labels(p.source.value, p.category, p.tier.value).inc()
        await store.save_classes(conn, list(changed.values()), members)
        return events

    async def list_classes(self, pool: asyncpg.Pool, cmd: Command) -> Reply:
        """Problem classes (dispatchers, supervisors): size, first and last seen, members, proactive whistle."""
        if cmd.actor.role not in ("dispatcher", "supervisor"):
            return Reply.refuse(403, "forbidden", "only dispatchers and supervisors see problem classes"
                                " / 仅限调度员和督办查看同类问题")
        q = cmd.payload
        status = q.get("status")
        if status not in (None, "open", "raised"):
            return Reply.refuse(422, "invalid", "status: open or raised / 状态无效", "status")
        asked = paging.window(q, 100, paging.aware, paging.uuid)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        rows = await store.list_classes(pool, status, q.get("category"), q.get("building"), limit + 1, after)
        return Reply.success(paging.page([_class_view(r) for r in rows], limit, lambda c: (c["first_seen"], c["id"])))

    async def categories(self, pool: asyncpg.Pool, cmd: Command) -> Reply:  # noqa: ARG002
        """The service catalogue, with each category's attributes, keywords and group."""
        return Reply.success([asdict(c) for c in self.catalogue.values()])

    async def issue_api_key(self, conn: asyncpg.Connection, cmd: Command, now: datetime):
        """Issue an API key to an Open311 client (supervisors); only its hash is kept."""
        if cmd.actor.role != "supervisor":
            return Reply.refuse(403, "supervisor_only", "only supervisors issue API keys / 仅限督办签发密钥"), []
        client = str(cmd.payload.get("client") or "")
        if not _CLIENT.match(client):
            return Reply.refuse(422, "invalid", "client: 1–64 letters, digits, '.', '_' or '-' / 客户端名称无效",
                                "client"), []
        note = cmd.payload.get("note")
        api_key = "o311_" + secrets.token_urlsafe(24)
        await store.save_api_key(conn, key_hash(api_key), client, str(note)[:1000] if note else None,
                                 str(cmd.actor), now)
        return Reply.success({"api_key": api_key, "client": client}), []

    async def revoke_api_keys(self, conn: asyncpg.Connection, cmd: Command, now: datetime):
        """Revoke every key of an Open311 client (supervisors): from now on its requests get the spec's 403."""
        if cmd.actor.role != "supervisor":
            return Reply.refuse(403, "supervisor_only", "only supervisors revoke API keys / 仅限督办吊销密钥"), []
        client = str(cmd.payload.get("client") or "")
        revoked = await store.revoke_api_keys(conn, client, str(cmd.actor), now) if _CLIENT.match(client) else 0
        if not revoked:
            return Reply.refuse(404, "no_such_client", f"no active API key for {client[:64]!r} / 该客户端没有有效密钥",
                                "client"), []
        return Reply.success({"client": client, "revoked": revoked}), []

    async def reporter_contact(self, pool: asyncpg.Pool, cmd: Command) -> Reply:
        """The reporter's whole phone, for the notifier to text the follow-up link (system callers only)."""
        if cmd.actor.role != "system":
            return Reply.refuse(403, "forbidden", "system callers only / 仅限系统调用")
        try:
            whistle_id = UUID(str(cmd.payload.get("whistle_id")))
        except ValueError:
            return Reply.refuse(422, "invalid", "not a whistle id / 哨编号无效", "whistle_id")
        row = await store.reporter_contact(pool, whistle_id)
        if row is None:
            return Reply.refuse(404, "no_such_whistle", "no such whistle / 无此哨")
        return Reply.success({"phone": row["reporter_phone"], "sms_consent": row["reporter_sms_consent"]})

    async def check_api_key(self, pool: asyncpg.Pool, cmd: Command) -> Reply:
        """The client an API key was issued to, or 403."""
        api_key = cmd.payload.get("api_key")
        client = await store.api_key_client(pool, key_hash(api_key)) if isinstance(api_key, str) and api_key else None
        if client is None:
            return Reply.refuse(403, "bad_api_key", "invalid api_key / API 密钥无效", "api_key")
        return Reply.success({"client": client})


_CLIENT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def key_hash(api_key: str) -> str:
    """Keys are random and long, so a plain SHA-256 is enough (no salt or stretching needed)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def _class_view(r: dict) -> dict:
    return {
        "id": str(r["id"]), "category": r["category"], "building": r["building"], "grid": r["grid"],
        "status": "raised" if r["raised_at"] else "open", "size": r["size"],
        "first_seen": r["first_seen"].isoformat(), "last_seen": r["last_seen"].isoformat(),
        "member_whistle_ids": [str(w) for w in r["member_ids"]],
        "proactive_whistle_id": str(r["proactive_whistle_id"]) if r["proactive_whistle_id"] else None,
        "raised_at": r["raised_at"].isoformat() if r["raised_at"] else None,
    }
