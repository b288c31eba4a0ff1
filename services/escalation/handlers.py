"""Escalation's handlers: start and stop clocks on summons events, act on timer firings."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import structlog

from services.escalation import domain, store
from services.escalation.policy import Policies
from services.escalation.timers import ClockDue, timer_message
from shared import telemetry
from shared.contracts import Command, Reply, SummonsIssued, SummonsReported

log = structlog.get_logger("escalation")


class EscalationHandlers:
    def __init__(self, policies: Policies):
        self.policies = policies

    async def on_summons_issued(self, conn: asyncpg.Connection, event: SummonsIssued, now: datetime):  # noqa: ARG002
        """Start the report clock with the tier's policy snapshotted, and arm its timer."""
        clock = domain.start_report_clock(event, self.policies.for_tier(event.tier))
        if not await store.insert_clock(conn, clock):
            return []
        return [timer_message(clock)]

    async def on_summons_reported(self, conn: asyncpg.Connection, event: SummonsReported, now: datetime):  # noqa: ARG002
        """报到 stops the report clock; its pending timer becomes stale."""
        for clock in await store.lock_summons_clocks(conn, event.summons_id):
            if clock.kind == "report" and clock.state == "running":
                await store.update_clock(conn, domain.stop(clock))
        return []

    async def on_clock_due(self, conn: asyncpg.Connection, due: ClockDue, now: datetime):
        """A timer fired: breach and climb the ladder, or drop it if its generation is stale."""
        clock = await store.lock_clock(conn, due.clock_id)
        if clock is None:
            log.warning("clock.unknown", clock_id=str(due.clock_id))
            return []
        updated, events = domain.fire(clock, due.generation, now)
        if updated is clock:
            telemetry.HANDLED.labels("escalation", "clock.due", "stale").inc()
            return []
        await store.update_clock(conn, updated)
        out: list = list(events)
        if domain.next_firing(updated):
            out.append(timer_message(updated))
        return out

    async def policies_query(self, pool: asyncpg.Pool, cmd: Command) -> Reply:  # noqa: ARG002
        """The SLA policies in force."""
        return Reply.success(self.policies.model_dump(mode="json"))
