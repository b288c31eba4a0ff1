"""Channels: each turns one delivery into one attempt and says what the channel answered.

One small interface (`Channel.send`), so the sender does not care whether it posts a signed
webhook, a robot message, an email or an SMS; each has its base URL or host in settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from services.notifier.domain import Answer
from services.notifier.messages import Message


@dataclass(frozen=True)
class Delivery:
    """One attempt's input: the same `message_id` on every attempt, so a receiver can drop a repeat."""

    message_id: str
    kind: str  # the event that caused it, e.g. summons.issued
    address: str
    message: Message
    data: dict[str, Any]  # the structured facts (a webhook's body)
    secret: str | None = None
    mention: list[str] = field(default_factory=list)


class Channel(Protocol):
    name: str

    async def send(self, delivery: Delivery) -> Answer:
        """One attempt; never raises for the channel's own failures (they come back as an Answer)."""
        ...
