"""Reporters' personal data: when it is due for deletion, and what is left of it once deleted.

Every service that holds something of a reporter (intake: name, phone, e-mail and consents as given; the
ledger: the same masked, in its view and in its timeline's events; the notifier: whether the reporter may
be texted, and the masked number its SMS attempts went to) deletes it on its own, from what it knows:

- `WHISTLE_REPORTER_RETENTION_DAYS` after the whistle was struck off (whistle.closed), unless it was
  reopened since (whistle.reopened): a periodic task in each service (`due_for_purge`);
- at once when it takes `whistle.reporter_erased`, which intake emits when a supervisor erases the data on
  the reporter's request.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from shared.contracts import Event, WhistleClosed, WhistleReopened
from shared.validation import public_text

PURGE_BATCH = 500  # whistles purged per statement: a purge after a long stop never holds many rows locked at once
RETENTION = "retention"  # why the data went: its retention ran out …
ERASURE = "erasure"  # … or the reporter asked (a supervisor erased it)


def struck_off(closed_at: datetime | None, reopened_at: datetime | None) -> bool:
    """Struck off and not reopened since: the latest close comes after the latest reopen (event times, so the
    two events may be taken in any order)."""
    return closed_at is not None and (reopened_at is None or closed_at > reopened_at)


def cutoff(now: datetime, retention_days: float) -> datetime:
    """Whistles struck off at or before this time are past their reporter data's retention."""
    return now - timedelta(days=retention_days)


def due_for_purge(closed_at: datetime | None, reopened_at: datetime | None, now: datetime,
                  retention_days: float) -> bool:
    """Whether a whistle's reporter data must go now: struck off (not reopened since) `retention_days` ago."""
    return struck_off(closed_at, reopened_at) and closed_at <= cutoff(now, retention_days)  # type: ignore[operator]


_PARTLY_MASKED = re.compile(r"[0-9A-Za-z]*\*{2,}[0-9A-Za-z]*")


def masked_free_text(text: str | None, name: str | None) -> str | None:
    """Free text once its reporter is gone: phones, e-mails, ID numbers, rooms and the reporter's name masked,
    and wholly (what the public view keeps to recognise a number, 139****5678, goes too)."""
    masked = public_text(text, [name] if name else [])
    return _PARTLY_MASKED.sub(lambda m: "*" * len(m.group()), masked) if masked else masked


def removed_reporter(why: str, at: datetime, reporter: dict[str, Any] | None) -> dict[str, Any]:
    """What a view keeps of a reporter whose data went: that it went, why and when. The consent to publication
    outlives a retention purge (the whistle, masked, stays public as agreed) but not an erasure on request."""
    kept = {"removed": why, "removed_at": at.isoformat()}
    if why == RETENTION and reporter and reporter.get("public_consent"):
        kept["public_consent"] = True
    return kept


def scrubbed_attempts(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A notification's attempt log without the reporter's number, nor the channel's answer (which may echo it)."""
    return [{**a, "address": None, "answer": None} for a in attempts]


async def record_whistle_times(conn: asyncpg.Connection, events: list[Event]) -> None:
    """Into the service's own `whistles` (closed_at, reopened_at): when each whistle was struck off and
    reopened, as its events tell (the latest of each, whatever order they come in)."""
    for column, kind in (("closed_at", WhistleClosed), ("reopened_at", WhistleReopened)):
        rows = [(e.whistle_id, e.occurred_at) for e in events if isinstance(e, kind)]
        if rows:
            await conn.execute(
                f"UPDATE whistles w SET {column} = GREATEST(w.{column}, u.at)"
                " FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at) WHERE w.id = u.id",
                [i for i, _ in rows], [at for _, at in rows])
