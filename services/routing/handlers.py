"""Routing's handlers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from uuid import UUID

import asyncpg
import structlog

from services.routing import domain, store
from services.routing.payloads import ArbitrateWhistle, ResponderRef, WhistleRef
from services.routing.registry import Registry
from services.routing.responders import read_registry
from shared.contracts import (
    NOT_SUMMONABLE,
    Command,
    Refusal,
    Reply,
    SummonsResolved,
    SummonsReturned,
    SummonsTransferred,
    WhistleArbitrated,
    WhistleArbitrationNeeded,
    WhistleBlown,
    WhistleReopened,
    WhistleUnroutable,
)

log = structlog.get_logger("routing")
ARBITRATE_AFTER_RETURNS = 2  # 审定: after two returns a supervisor decides


class RoutingHandlers:
    def __init__(self, registry: Registry, rules: list[domain.Rule], rules_file: Path):
        self.registry = registry
        self.rules = rules
        self.rules_file = rules_file
        self._rules_mtime = rules_file.stat().st_mtime
        self.registry_version = -1  # the version of `registry`: any replica's edit moves the one in Postgres
        self.loads = store.LoadCache()

    async def refresh_registry(self, runtime) -> None:
        """Take up registry edits made through another replica (each second, and before each decision)."""
        await self._fresh_registry(runtime.pool)

    async def _fresh_registry(self, conn: asyncpg.Connection | asyncpg.Pool, version: int | None = None) -> None:
        version = await store.registry_version(conn) if version is None else version
        if version != self.registry_version:
            self.registry = await read_registry(conn)
            self.registry_version = version

    async def _book(self, conn: asyncpg.Connection) -> domain.LoadBook:
        """The loads every replica shares, this transaction alone deciding from them until it commits, and
        the registry as it is now."""
        book, version = await self.loads.book(conn)
        await self._fresh_registry(conn, version)
        return book

    async def on_whistles_blown(self, conn: asyncpg.Connection, whistles: list[WhistleBlown], now: datetime):
        """Summon the lead (and co-handlers) for each new whistle, recording why; a batch at a time."""
        book = await self._book(conn)
        await store.save_whistles(conn, whistles)
        out: list = []
        decided = []
        for whistle in whistles:
            decision, events = domain.route(whistle, self.rules, self.registry, book, now)
            decided.append((decision, events, None))
            out += events
        await store.record_many(conn, decided)
        await store.save_book(conn, book)
        return out

    async def _release(self, conn: asyncpg.Connection, summons_id: UUID) -> None:
        await store.close_assignment(conn, summons_id)

    async def on_summons_resolved(self, conn: asyncpg.Connection, event: SummonsResolved, now: datetime):  # noqa: ARG002
        """A resolved summons no longer counts towards its responder's load."""
        await self._release(conn, event.summons_id)
        return []

    async def on_summons_returned(self, conn: asyncpg.Connection, event: SummonsReturned, now: datetime):
        """退单: summon someone else, excluding whoever returned it; after two returns a supervisor decides."""
        await self._release(conn, event.summons_id)
        returned_by = await store.record_return(conn, event)
        whistle = await store.whistle(conn, event.whistle_id)
        if len(returned_by) >= ARBITRATE_AFTER_RETURNS or whistle is None:
            return [WhistleArbitrationNeeded(
                occurred_at=now, whistle_id=event.whistle_id, causation_id=event.event_id, actor="system:routing",
                returned_by=returned_by,
            )]
        exclude = frozenset(returned_by) | await store.holders(conn, event.whistle_id)
        book = await self._book(conn)
        decision, events = domain.reroute(
            whistle, event.role, self.rules, self.registry, book, now, exclude, event.event_id, event.summons_id,
        )
        await store.record(conn, decision, events, rule=decision.rule)
        await store.save_book(conn, book)
        return events

    async def on_summons_transferred(self, conn: asyncpg.Connection, event: SummonsTransferred, now: datetime):
        """转派: summon the named responder in the same role."""
        await self._release(conn, event.summons_id)
        whistle = await store.whistle(conn, event.whistle_id)
        book = await self._book(conn)
        target = self.registry.responders.get(event.to_responder_id)
        if whistle is None or target is None or not target.summonable:
            return [WhistleUnroutable(occurred_at=now, whistle_id=event.whistle_id, causation_id=event.event_id,
                                      actor="system:routing", reason=f"cannot transfer to {event.to_responder_id!r}")]
        events = [domain.summon(target, whistle, event.role, now, book, causation_id=event.event_id,
                                replaces=event.summons_id)]
        await store.record(conn, None, events, rule="transfer")
        await store.save_book(conn, book)
        return events

    async def on_whistle_reopened(self, conn: asyncpg.Connection, event: WhistleReopened, now: datetime):
        """重办: the same lead is summoned again."""
        whistle = await store.whistle(conn, event.whistle_id)
        book = await self._book(conn)
        lead = self.registry.responders.get(event.lead_responder_id)
        if whistle is None or lead is None or not lead.summonable:
            return [WhistleUnroutable(occurred_at=now, whistle_id=event.whistle_id, causation_id=event.event_id,
                                      actor="system:routing", reason="the lead to reopen it to is gone")]
        events = [domain.summon(lead, whistle, "lead", now, book, causation_id=event.event_id)]
        await store.record(conn, None, events, rule="reopened")
        await store.save_book(conn, book)
        return events

    async def arbitrate(self, conn: asyncpg.Connection, cmd: Command[ArbitrateWhistle], now: datetime):
        """审定: a supervisor names who handles a twice-returned whistle; it cannot be returned again."""
        body = cmd.payload
        try:
            whistle_id = UUID(body.whistle_id)
        except ValueError:
            return Reply.refuse(404, "no_such_whistle", "no such whistle / 无此哨"), []
        whistle = await store.whistle(conn, whistle_id)
        if whistle is None:
            return Reply.refuse(404, "no_such_whistle", "no such whistle / 无此哨"), []
        target = self.registry.responders.get(body.responder_id)
        if target is None or not target.active:
            return Reply.refuse(422, "unknown_responder", "no such responder / 无此响应单位", "responder_id"), []
        if not target.summonable:
            return Reply.refuse(422, "not_summonable", NOT_SUMMONABLE, "responder_id"), []
        returns, done = await store.lock_arbitration(conn, whistle_id)
        if done or returns < ARBITRATE_AFTER_RETURNS:
            return Reply.refuse(409, "no_arbitration_needed",
                                "only a whistle returned twice awaits arbitration / 仅退单两次的哨需要审定"), []
        await store.record_arbitration(conn, whistle_id, target.id, cmd.actor.id, now)
        book = await self._book(conn)
        arbitrated = WhistleArbitrated(occurred_at=now, whistle_id=whistle_id, actor=str(cmd.actor),
                                       responder_id=target.id, note=body.note)
        issued = domain.summon(target, whistle, "lead", now, book, actor=str(cmd.actor),
                               causation_id=arbitrated.event_id, arbitrated=True)
        await store.record(conn, None, [issued], rule="arbitration")
        await store.save_book(conn, book)
        return Reply.success({"id": str(whistle_id), "responder_id": target.id, "summons_id": str(issued.summons_id)}), \
            [arbitrated, issued]

    async def responder(self, pool: asyncpg.Pool, cmd: Command[ResponderRef]) -> Reply:  # noqa: ARG002
        """One responder of the registry, its name and kind (to check a transfer's target, to name who holds what)."""
        r = self.registry.responders.get(cmd.payload.id)
        if r is None or not r.active:
            return Reply.refuse(404, "no_such_responder", "no such responder / 无此响应单位", "to_responder_id")
        return Reply.success({"id": r.id, "kind": r.kind.value, "name_en": r.name_en, "name_zh": r.name_zh})

    async def explain(self, pool: asyncpg.Pool, cmd: Command[WhistleRef]) -> Reply:
        """Which rule matched and why each candidate was chosen or skipped (dispatchers and supervisors)."""
        try:
            whistle_id = UUID(cmd.payload.id)
        except ValueError:
            whistle_id = None
        found = await store.explanation(pool, whistle_id) if whistle_id else None
        if found is None:
            return Reply(ok=False, refusal=Refusal(status=404, code="not_routed", reason="no routing decision for this whistle / 该哨尚未派单"))
        return Reply.success(found)

    async def reload_rules(self, runtime) -> None:
        """Pick up an edited rules file without a restart; a bad file is logged and ignored."""
        mtime = self.rules_file.stat().st_mtime
        if mtime == self._rules_mtime:
            return
        self._rules_mtime = mtime
        try:
            self.rules = domain.load_rules(self.registry, self.rules_file)
            log.info("rules.reloaded", rules=len(self.rules), file=str(self.rules_file))
        except Exception as exc:  # any bad edit keeps the rules in force
            log.error("rules.invalid", file=str(self.rules_file), error=str(exc))
