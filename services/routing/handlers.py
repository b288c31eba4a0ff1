"""Routing's handlers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from uuid import UUID

import asyncpg
import structlog

from services.routing import domain, store
from services.routing.registry import Registry
from shared.contracts import Command, Refusal, Reply, SummonsResolved, WhistleBlown

log = structlog.get_logger("routing")


class RoutingHandlers:
    def __init__(self, registry: Registry, rules: list[domain.Rule], rules_file: Path):
        self.registry = registry
        self.rules = rules
        self.rules_file = rules_file
        self._rules_mtime = rules_file.stat().st_mtime
        self.book = domain.LoadBook()

    async def load(self, runtime) -> None:
        """Rebuild the load book from the assignments before consuming."""
        self.book = await store.load_book(runtime.pool)

    async def on_whistle_blown(self, conn: asyncpg.Connection, whistle: WhistleBlown, now: datetime):
        """Summon the lead (and co-handlers) for each new whistle, recording why."""
        decision, events = domain.route(whistle, self.rules, self.registry, self.book, now)
        await store.record(conn, decision, events)
        return events

    async def on_summons_resolved(self, conn: asyncpg.Connection, event: SummonsResolved, now: datetime):  # noqa: ARG002
        """A resolved summons no longer counts towards its responder's load."""
        if responder_id := await store.close_assignment(conn, event.summons_id):
            self.book.release(responder_id)
        return []

    async def explain(self, pool: asyncpg.Pool, cmd: Command) -> Reply:
        """Which rule matched and why each candidate was chosen or skipped."""
        if cmd.actor.role not in ("dispatcher", "supervisor"):
            return Reply(ok=False, refusal=Refusal(status=403, code="forbidden", reason="dispatchers and supervisors only / 仅限调度员和督办"))
        try:
            whistle_id = UUID(str(cmd.payload.get("id")))
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
        except (ValueError, KeyError) as exc:
            log.error("rules.invalid", file=str(self.rules_file), error=str(exc))
