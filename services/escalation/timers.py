"""SLA timers as JetStream message schedules: one schedule subject per clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

from nats.aio.msg import Msg
from pydantic import BaseModel, ConfigDict, ValidationError

from services.escalation.domain import Clock
from shared import subjects
from shared.db import OutboxMessage
from shared.runtime import Poison


class ClockDue(BaseModel):
    """What a schedule publishes on clock.due.<clock_id> when it fires."""

    model_config = ConfigDict(extra="forbid")
    clock_id: UUID
    generation: int


def timer_message(clock: Clock, rearm: str = "") -> OutboxMessage:
    """The schedule for the clock's next firing; it replaces any earlier one (one message per subject).

    `rearm` makes the message id unique for a deliberate re-arm, which JetStream's duplicate
    window would otherwise drop; replacing a schedule with the same one is harmless.
    """
    assert clock.fire_at is not None
    at = clock.fire_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return OutboxMessage(
        subject=f"{subjects.CLOCK_TIMER}.{clock.id}",
        body=json.dumps({"clock_id": str(clock.id), "generation": clock.generation}).encode(),
        msg_id=f"timer-{clock.id}-{clock.generation}{rearm}",
        headers={"Nats-Schedule": f"@at {at}", "Nats-Schedule-Target": f"{subjects.CLOCK_DUE}.{clock.id}"},
    )


def parse_due(m: Msg) -> ClockDue:
    try:
        return ClockDue.model_validate_json(m.data)
    except ValidationError as exc:
        raise Poison(str(exc)) from exc


def utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)
