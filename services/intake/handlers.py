"""Intake's handlers: parse, call the domain, save, write the outbox."""

from __future__ import annotations

import hashlib
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
        body = {k: v for k, v in cmd.payload.items() if k != "idempotency_key"}
        try:
            raise_cmd = RaiseWhistle.model_validate(body)
        except ValidationError as exc:
            return Reply(ok=False, refusal=refusal_from(exc)), []
        key = cmd.payload.get("idempotency_key")
        if key:
            body_hash = hashlib.sha256(raise_cmd.model_dump_json().encode()).hexdigest()
            seen = await store.lock_idempotency(conn, str(cmd.actor), key)
            if seen is not None:
                if seen["body_hash"] != body_hash:
                    return Reply.refuse(409, "idempotency_conflict", "this Idempotency-Key was used for another"
                                        " whistle / 该幂等键已用于另一条诉求", "Idempotency-Key"), []
                return Reply.success({"id": str(seen["whistle_id"]), "status": "open", "replayed": True}), []
        outcome = domain.blow(raise_cmd, self.catalogue, str(cmd.actor), now)
        if isinstance(outcome, Refusal):
            return Reply(ok=False, refusal=outcome), []
        await store.save_whistle(conn, outcome, raise_cmd)
        if key:
            await store.remember_idempotency(conn, str(cmd.actor), key, body_hash, outcome.whistle_id, now)
        telemetry.WHISTLES.labels(outcome.source.value, outcome.category, outcome.tier.value).inc()
        return Reply.success({"id": str(outcome.whistle_id), "status": "open"}), [outcome]

    async def categories(self, pool: asyncpg.Pool, cmd: Command) -> Reply:  # noqa: ARG002
        """The service catalogue."""
        return Reply.success([asdict(c) for c in self.catalogue.values()])
