"""Intake's handlers: parse, call the domain, save, write the outbox."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import asdict
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from services.intake import blows, classes, domain, hotline, store
from services.intake.payloads import (
    CLIENT,
    ApiKeyCheck,
    ApiKeyIssue,
    ApiKeyRevoke,
    BlowWhistle,
    ClassList,
    ImportBatch,
    ReporterContactAsk,
    ReporterErase,
)
from shared import paging, privacy, telemetry
from shared.contracts import (
    Command,
    Event,
    Refusal,
    Reply,
    Source,
    WhistleBlown,
    WhistleReporterErased,
)
from shared.ids import utcnow


class IntakeHandlers:
    def __init__(self, catalogue: dict[str, domain.Category], class_window: timedelta = timedelta(days=30),
                 class_threshold: int = 5):
        self.catalogue = catalogue
        self.class_window = class_window
        self.class_threshold = class_threshold
        self.hotline_mapping = hotline.load_mapping()

    async def import_orders(self, conn: asyncpg.Connection, cmd: Command[ImportBatch], now: datetime):
        """接诉即办: a batch of 12345 work orders; all or nothing unless `partial`, idempotent by order id
        (dispatchers, supervisors)."""
        batch = cmd.payload
        rows = batch.rows
        orders, errors = hotline.check_rows(rows, batch.first_row, self.hotline_mapping, set(self.catalogue))
        failed = [e.as_dict() for e in errors]
        if errors and not batch.partial:
            return Reply(ok=False, data={"failed": failed}, refusal=Refusal(
                status=422, code="invalid_rows", field="rows",
                reason=f"{len(errors)} of {len(rows)} rows are invalid; nothing was imported / 有无效行，未导入")), []
        # imports run one at a time (requests are answered concurrently, and intake may run twice):
        # two imports of the same file must not both find an order new
        await store.lock_imports(conn)
        known = await store.imported_orders(conn, [o.external_id for o in orders])
        fresh = [o for o in orders if o.external_id not in known]
        events: list[Event] = []
        if not batch.dry_run:
            blown = [(order, domain.blow(order.whistle, self.catalogue, str(cmd.actor), now)) for order in fresh]
            await store.save_whistles(conn, [(e, order.whistle.reporter) for order, e in blown])
            for order, e in blown:
                await store.remember_order(conn, order.external_id, e.whistle_id, order.received_at, now)
                telemetry.WHISTLES.labels(e.source.value, e.category, e.tier.value).inc()
                events.append(e)  # grouped into its problem class by `group`, like any whistle
        summary = {"rows": len(rows), "imported": 0 if batch.dry_run else len(fresh),
                   "unchanged": len(orders) - len(fresh), "failed": failed, "dry_run": batch.dry_run}
        return Reply.success(summary), events

    async def blow(self, conn: asyncpg.Connection, commands: list[Command[BlowWhistle]],
                   now: datetime) -> list[tuple[Reply, list[Event]]]:
        """吹哨: raise a whistle (dispatchers, supervisors); 201 once committed, the first answer again for an
        Idempotency-Key used with the same body, 409 with another. Group-committed: the requests of a
        moment are written together (their keys settled in arrival order: the first use may be in the
        same batch), with one insert of the whistles and one of the outbox."""
        checked = [blows.check(c, self.catalogue, now) for c in commands]
        batch = [b for b in checked if isinstance(b, blows.Blow)]
        firsts = blows.first_uses(batch)
        claimed = await store.claim_idempotency(conn, firsts, now)
        known = await store.seen_idempotency(conn, [b.key for b in firsts if b.key not in claimed])
        settled = iter(blows.settle(batch, known))
        out: list[tuple[Reply, list[Event]]] = []
        new = []
        for c in checked:
            if isinstance(c, Reply):
                out.append((c, []))
                continue
            s = next(settled)
            out.append((s.reply, [s.blow.whistle] if s.new else []))
            if s.new:
                new.append(s.blow)
        await store.save_whistles(conn, [(b.whistle, b.raised.reporter) for b in new])
        for b in new:
            telemetry.WHISTLES.labels(b.whistle.source.value, b.whistle.category, b.whistle.tier.value).inc()
        return out

    async def group(self, conn: asyncpg.Connection, whistles: list[WhistleBlown], now: datetime) -> list[Event]:  # noqa: ARG002
        """一个诉求解决一类问题: attach each blown whistle to its problem class; at the threshold, raise one.

        Off the blow request path: intake consumes its own `whistle.blown` events (native, Open311,
        12345 imports alike), a fetched batch at a time, in stream order. Replicas (each with its own
        partitions of whistles) take a lock per category first, so two whistles never decide on the same
        class at once. The classes the batch may join are then read once, decided in memory in order,
        and written back set-based. A
        whistle that joined a class before (a redelivery, a replayed stream) is dropped by `grouped_among`, so
        the consumer needs no inbox row per whistle. Everything
        counts from when each whistle was blown, and its events carry that time, as when grouping ran
        inside the blow (routing reacts to the same event concurrently, so the ledger may receive its
        events before or after these).
        """
        firsts: dict[UUID, WhistleBlown] = {}  # a second copy in the batch is the same whistle
        for w in whistles:
            if w.source != Source.proactive:  # the class's own whistle is not one
                firsts.setdefault(w.whistle_id, w)
        complaints = list(firsts.values())
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
        # intake owns them like any other whistle (saved before the class names them)
        await store.save_whistles(conn, [(p, None) for p in proactive])
        for p in proactive:
            telemetry.WHISTLES.labels(p.source.value, p.category, p.tier.value).inc()
        await store.save_classes(conn, list(changed.values()), members)
        return events

    async def list_classes(self, pool: asyncpg.Pool, cmd: Command[ClassList]) -> Reply:
        """Problem classes (dispatchers, supervisors): size, first and last seen, members, proactive whistle."""
        q = cmd.payload
        asked = paging.window(q.page, 100, paging.aware, paging.uuid)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        rows = await store.list_classes(pool, q.status, q.category, q.building, limit + 1, after)
        return Reply.success(paging.page([_class_view(r) for r in rows], limit, lambda c: (c["first_seen"], c["id"])))

    async def categories(self, pool: asyncpg.Pool, cmd: Command) -> Reply:  # noqa: ARG002
        """The service catalogue, with each category's attributes, keywords and group."""
        return Reply.success([asdict(c) for c in self.catalogue.values()])

    async def issue_api_key(self, conn: asyncpg.Connection, cmd: Command[ApiKeyIssue], now: datetime):
        """Issue an API key to an Open311 client (supervisors); only its hash is kept."""
        client = cmd.payload.client
        api_key = "o311_" + secrets.token_urlsafe(24)
        await store.save_api_key(conn, key_hash(api_key), client, cmd.payload.note or None, str(cmd.actor), now)
        return Reply.success({"api_key": api_key, "client": client}), []

    async def revoke_api_keys(self, conn: asyncpg.Connection, cmd: Command[ApiKeyRevoke], now: datetime):
        """Revoke every key of an Open311 client (supervisors): from now on its requests get the spec's 403."""
        client = cmd.payload.client
        # a name no key could be issued to has none
        revoked = await store.revoke_api_keys(conn, client, str(cmd.actor), now) if _CLIENT.match(client) else 0
        if not revoked:
            return Reply.refuse(404, "no_such_client", f"no active API key for {client[:64]!r} / 该客户端没有有效密钥",
                                "client"), []
        return Reply.success({"client": client, "revoked": revoked}), []

    async def reporter_contact(self, pool: asyncpg.Pool, cmd: Command[ReporterContactAsk]) -> Reply:
        """The reporter's whole phone, for the notifier to text the follow-up link (system callers only)."""
        row = await store.reporter_contact(pool, cmd.payload.whistle_id)
        if row is None:
            return Reply.refuse(404, "no_such_whistle", "no such whistle / 无此哨")
        return Reply.success({"phone": row["reporter_phone"], "sms_consent": row["reporter_sms_consent"]})

    async def erase_reporter(self, conn: asyncpg.Connection, cmd: Command[ReporterErase], now: datetime):
        """Erase a whistle's reporter's personal data on their request (supervisors): name, phone, e-mail and
        consents are forgotten here, the description masked, and whistle.reporter_erased tells every other
        service holding any of it. Erasing again changes nothing."""
        whistle_id = cmd.payload.whistle_id
        row = await store.lock_reporter(conn, whistle_id)
        if row is None:
            return Reply.refuse(404, "no_such_whistle", "no such whistle / 无此哨", "whistle_id"), []
        if row["reporter_removed"] == privacy.ERASURE:
            return Reply.success({"whistle_id": str(whistle_id), "erased": True, "already": True}), []
        name = row["reporter_name"]
        await store.remove_reporters(conn, [(whistle_id, privacy.masked_free_text(row["description"], name))],
                                     privacy.ERASURE, now)
        event = WhistleReporterErased(occurred_at=now, whistle_id=whistle_id, actor=str(cmd.actor),
                                      causation_id=cmd.request_id,
                                      reason=privacy.masked_free_text(cmd.payload.reason, name) or "")
        return Reply.success({"whistle_id": str(whistle_id), "erased": True, "already": False}), [event]

    async def whistle_times(self, conn: asyncpg.Connection, events: list[Event], now: datetime) -> list[Event]:  # noqa: ARG002
        """When each whistle was struck off or reopened: its reporter's data is kept until
        WHISTLE_REPORTER_RETENTION_DAYS after a close not followed by a reopen."""
        await privacy.record_whistle_times(conn, events)
        return []

    async def check_api_key(self, pool: asyncpg.Pool, cmd: Command[ApiKeyCheck]) -> Reply:
        """The client an API key was issued to, or 403 (the Open311 edge)."""
        api_key = cmd.payload.api_key
        client = await store.api_key_client(pool, key_hash(api_key)) if api_key else None
        if client is None:
            return Reply.refuse(403, "bad_api_key", "invalid api_key / API 密钥无效", "api_key")
        return Reply.success({"client": client})


_CLIENT = re.compile(CLIENT)


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


async def purge_reporters(pool: asyncpg.Pool, retention_days: float, now: datetime | None = None) -> int:
    """Forget the reporter of every whistle struck off `retention_days` ago (and not reopened since), a batch
    per transaction; how many."""
    now = now or utcnow()
    done = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await store.due_reporters(conn, privacy.cutoff(now, retention_days), privacy.PURGE_BATCH)
            await store.remove_reporters(conn, [(r["id"], privacy.masked_free_text(r["description"], r["reporter_name"]))
                                                for r in rows], privacy.RETENTION, now)
        done += len(rows)
        if len(rows) < privacy.PURGE_BATCH:
            return done
