"""Intake's handlers: parse, call the domain, save, write the outbox."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

import asyncpg
from pydantic import ValidationError

from services.intake import domain, store
from shared import telemetry
from shared.commands import RaiseWhistle
from shared.contracts import Command, Refusal, Reply
from shared.validation import refusal_from


class IntakeHandlers:
    def __init__(self, catalogue: dict[str, domain.Category]):
        self.catalogue = catalogue

    async def blow(self, conn: asyncpg.Connection, cmd: Command, now: datetime):
        """Raise a whistle (吹哨)."""
        if cmd.actor.role not in ("dispatcher", "supervisor"):
            return Reply.refuse(403, "forbidden", "only dispatchers raise whistles / 只有社区调度员可以吹哨"), []
        try:
            raise_cmd = RaiseWhistle.model_validate(cmd.payload)
        except ValidationError as exc:
            return Reply(ok=False, refusal=refusal_from(exc)), []
        outcome = domain.blow(raise_cmd, self.catalogue, str(cmd.actor), now)
        if isinstance(outcome, Refusal):
            return Reply(ok=False, refusal=outcome), []
        await store.save_whistle(conn, outcome)
        telemetry.WHISTLES.labels(outcome.source.value, outcome.category, outcome.tier.value).inc()
        return Reply.success({"id": str(outcome.whistle_id), "status": "open"}), [outcome]

    async def categories(self, pool: asyncpg.Pool, cmd: Command) -> Reply:  # noqa: ARG002
        """The service catalogue."""
        return Reply.success([asdict(c) for c in self.catalogue.values()])
