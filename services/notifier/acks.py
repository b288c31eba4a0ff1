"""One-tap report links on summons notifications (一键报到).

The link is minted when a notification is sent, not stored: it names the summons' own responder,
expires at the report deadline known then (or after `ack_link_default_s`), and the gateway checks it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.notifier.domain import RESIDENT
from shared import links

# the notices asking the summoned responder itself to report
ACK_KINDS = frozenset({"summons.issued", "summons.urged"})


def ack_link(public: str, secret: str, row: Any, default_s: float, now: datetime) -> str | None:
    """The one-tap link a notification carries, or None: only the summoned responder's own steps get one
    (a superior's step is numbered "2.1": the link would report for someone else)."""
    if row["kind"] not in ACK_KINDS or row["summons_id"] is None or row["recipient_id"] == RESIDENT \
            or "." in str(row["step"]):
        return None
    deadline = row["report_deadline"]
    expires = deadline if deadline is not None and deadline > now else now + timedelta(seconds=default_s)
    return f"{public.rstrip('/')}/a/{links.mint(secret, row['recipient_id'], row['summons_id'], expires)}"
