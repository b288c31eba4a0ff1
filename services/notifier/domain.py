"""The notifier's pure rules: who is told what, on which channel, when; and what an attempt's answer means.

No I/O and no clock: the time is passed in.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.contacts import ContactRule, ContactStep, QuietHours

BEIJING = ZoneInfo("Asia/Shanghai")
NAMESPACE = UUID("5b8e0f5e-3d7a-4c59-9a55-0c1f1a6f2e11")  # notification ids: uuid5 under this

# who is told about the events that name no single responder to tell
COMMUNITY_DESK = "community"  # 社区调度: returns and transfers
STREET_COMMAND = "street-command-centre"  # 街道指挥中心: extension requests wait on it (escalation's id)
RESIDENT = "resident"  # the reporter of a whistle, reached by SMS at the number intake holds

# summons.issued runs the responder's whole rule (later steps only while it is not reported);
# every other event is one notice on the recipient's first step
CHAIN_KINDS = frozenset({"summons.issued"})


class State(enum.StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"
    cancelled = "cancelled"


@dataclass(frozen=True)
class Planned:
    """A notification to write: its deterministic id, recipient, step, channel and when it is due."""

    id: UUID
    recipient_id: str
    step: str
    channel: str
    target: dict[str, Any]
    due_at: datetime
    stops_on_report: bool


def notification_id(cause: UUID, recipient: str, step: str) -> UUID:
    """The same event, recipient and step always give the same id (a redelivery makes no second row);
    it is also the message id every channel carries on every attempt."""
    return uuid.uuid5(NAMESPACE, f"{cause}/{recipient}/{step}")


def held_until(at: datetime, quiet: QuietHours | None) -> datetime:
    """`at`, or the end of the quiet-hours window (Beijing time) it falls in."""
    if quiet is None:
        return at
    start, end = quiet.window
    local = at.astimezone(BEIJING)
    now = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= now < end
        release_day = local.date()
    else:  # across midnight: 22:00–07:00
        inside = now >= start or now < end
        release_day = local.date() + timedelta(days=1) if now >= start else local.date()
    if not inside:
        return at
    return datetime.combine(release_day, end, tzinfo=BEIJING).astimezone(at.tzinfo)


def _target(step: ContactStep) -> dict[str, Any]:
    return {"address": step.address, "secret": step.secret, "mention": list(step.mention)}


def plan(
    kind: str, cause: UUID, recipient: str, at: datetime, tier: str, rules: dict[str, ContactRule],
    default: ContactRule | None, superior: str | None = None, stops_on_report: bool = False,
) -> list[Planned]:
    """The notifications an event makes for one recipient, by its rule (or the community default).

    A chain (a new summons) runs every step, each `delay_s` after the event; a step naming the
    superior runs the superior's own self-steps, offset by that delay (their later steps stop on
    report like the rest). Any other event is one notice on the recipient's first step. Quiet hours
    hold routine-tier notifications to the end of the window; urgent and complex go through.
    """
    rule = rules.get(recipient) or default
    if rule is None or not rule.steps:
        return []
    chain = kind in CHAIN_KINDS
    out: list[Planned] = []
    for i, step in enumerate(rule.steps if chain else rule.steps[:1], start=1):
        if step.target == "superior":
            if not chain or superior is None:
                continue
            upper = rules.get(superior) or default
            for j, own in enumerate([s for s in (upper.steps if upper else []) if s.target == "self"], start=1):
                out.append(_planned(kind, cause, superior, f"{i}.{j}", own, at + timedelta(seconds=step.delay_s),
                                    tier, upper.quiet_hours, stops_on_report))
            continue
        out.append(_planned(kind, cause, recipient, str(i), step, at, tier, rule.quiet_hours, stops_on_report))
    return out


def _planned(kind: str, cause: UUID, recipient: str, step_no: str, step: ContactStep, at: datetime, tier: str,
             quiet: QuietHours | None, stops: bool) -> Planned:
    due = at + timedelta(seconds=step.delay_s)
    if tier == "routine":
        due = held_until(due, quiet)
    # every step of a chain stops on report; the first is usually out before anyone could report
    return Planned(notification_id(cause, recipient, step_no), recipient, step_no, step.channel, _target(step), due,
                   stops or kind in CHAIN_KINDS)


def plan_resident(cause: UUID, at: datetime, default: ContactRule | None) -> Planned:
    """The follow-up link to the reporter (回访短信): by SMS, held by the community's quiet hours whatever
    the tier (it is never urgent); the number is asked of intake when it is sent."""
    due = held_until(at, default.quiet_hours if default else None)
    return Planned(notification_id(cause, RESIDENT, "1"), RESIDENT, "1", "sms", {}, due, False)


# --- attempts ---------------------------------------------------------------------------------


class Verdict(enum.StrEnum):
    delivered = "delivered"
    retry = "retry"  # the channel is down, busy or answered 5xx: try again later
    refused = "refused"  # the channel said no for good (4xx, a bad key): never again


@dataclass(frozen=True)
class Answer:
    """What the channel said to one attempt."""

    verdict: Verdict
    status: int | None = None  # HTTP status or SMTP code; None when nothing answered
    detail: str = ""  # the channel's own words (errcode, message, exception), short


@dataclass(frozen=True)
class Backoff:
    """Exponential: first_s, first_s x factor, …, at most max_s; jitter spreads a burst of retries."""

    first_s: float = 1.0
    factor: float = 4.0
    max_s: float = 600.0
    jitter: float = 0.2

    def delay(self, attempt: int, spread: float) -> float:
        """Seconds before attempt `attempt + 1`; `spread` in [0, 1) is the caller's random draw."""
        base = min(self.first_s * self.factor ** max(attempt - 1, 0), self.max_s)
        return base * (1 - self.jitter + 2 * self.jitter * spread)


@dataclass(frozen=True)
class Outcome:
    """Where a notification stands after an attempt."""

    state: State
    next_at: datetime | None
    final: bool = field(default=False)


def after_attempt(answer: Answer, attempt: int, max_attempts: int, now: datetime, backoff: Backoff,
                  spread: float) -> Outcome:
    """Delivered; retried later (channel down or 5xx) until `max_attempts`; failed (4xx, or retries spent)."""
    if answer.verdict is Verdict.delivered:
        return Outcome(State.delivered, None, True)
    if answer.verdict is Verdict.retry and attempt < max_attempts:
        return Outcome(State.pending, now + timedelta(seconds=backoff.delay(attempt, spread)))
    return Outcome(State.failed, None, True)


def http_verdict(status: int) -> Verdict:
    """2xx delivered; 408, 425, 429 and 5xx worth another try; any other 4xx is final."""
    if 200 <= status < 300:
        return Verdict.delivered
    if status >= 500 or status in (408, 425, 429):
        return Verdict.retry
    return Verdict.refused


def mask(channel: str | None, address: str | None) -> str | None:
    """What logs, events and reads show of an address: 138****1234, z***@example.com, a URL's host."""
    if not address:
        return address
    if channel == "sms" or address.isdigit():
        return address[:3] + "****" + address[-4:] if len(address) >= 11 else "****" + address[-2:]
    if channel == "email" and "@" in address:
        local, domain = address.rsplit("@", 1)
        return f"{local[:1]}***@{domain}"
    if channel == "webhook":
        parts = urlsplit(address)
        return f"{parts.scheme}://{parts.netloc}/…" if parts.path not in ("", "/") else f"{parts.scheme}://{parts.netloc}/"
    return address[:4] + "…"  # a robot's key is a credential
