"""Routing's handlers."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.routing import domain, store
from shared.contracts import SummonsResolved, WhistleBlown


class RoutingHandlers:
    def __init__(self, registry: dict[str, domain.Responder], rules: list[domain.Rule]):
        self.registry = registry
        self.rules = rules
        self._members = [r.id for r in registry.values() if r.kind is domain.ResponderKind.member]

    async def on_whistle_blown(self, conn: asyncpg.Connection, whistle: WhistleBlown, now: datetime):
        """Summon a lead responder for each new whistle."""
        load = await store.open_load(conn, self._members)
        events = domain.route(whistle, self.rules, self.registry, load, now)
        await store.record(conn, events)
        return events

    async def on_summons_resolved(self, conn: asyncpg.Connection, event: SummonsResolved, now: datetime):  # noqa: ARG002
        """A resolved summons no longer counts towards its responder's load."""
        await store.close_assignment(conn, event.summons_id)
        return []
