"""Several event subjects on one consumer: a service's consumer (one per replica, over the partitions it
holds) for every event it takes, each subject with its handler.

Why one consumer and not one per subject: a JetStream consumer with a filter walks the stream past
every message it does not take (nats-server's file store: its subjects are one per whistle, so the
walk is linear), so each durable costs the server a look at every event. Sixteen partitions times
fourteen consumers made NATS the largest CPU cost of a whistle (1.04 ms against 0.49 with one
partition, bench/README.md). One consumer per service also keeps a whistle's events in order across
the subjects it takes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from shared.contracts import Event

Handler = Callable[[asyncpg.Connection, Any, datetime], Awaitable[list]]


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: `*` one token, `>` the rest (at least one)."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


@dataclass
class EventRoutes:
    """Subjects → handler, in the order declared (the first route with a subject that matches an event's
    takes it). `batch` handlers take a list of events, `each` handlers one event; both return what to emit.
    A route may name several subjects: its handler gets their events together, in stream order, and the
    consumer filters on exactly those (a wildcard would bring events the handler only skips, each one
    fetched, parsed, fenced and acked for nothing).

    A fetched batch is split by route, each route's events in stream order, the routes in the order
    declared, all in one transaction: what one consumer per subject did, with whole batches per handler
    (cutting a batch into runs of consecutive events made the notifier's statements three times as
    many). Order across routes holds from one batch to the next, not within one."""

    routes: list[tuple[tuple[str, ...], Handler, bool]] = field(default_factory=list)
    _by_type: dict[type, int] = field(default_factory=dict, repr=False)  # an event type → its route's index

    def batch(self, subject: str | tuple[str, ...], handle: Handler) -> EventRoutes:
        self.routes.append((_subjects(subject), handle, True))
        return self

    def each(self, subject: str | tuple[str, ...], handle: Handler) -> EventRoutes:
        self.routes.append((_subjects(subject), handle, False))
        return self

    @property
    def subjects(self) -> list[str]:
        """The subjects to consume, as events name them (a partitioned consumer narrows each to its
        partition: `whistle.blown` → `whistle.blown.<partition>.*`)."""
        return [s for subjects, _, _ in self.routes for s in subjects]

    def index_of(self, event: Event) -> int:
        """The route that takes the event: the first with a subject that matches its type's."""
        kind = type(event)
        if kind not in self._by_type:
            subject = getattr(kind, "SUBJECT", "")
            found = [i for i, r in enumerate(self.routes) if any(subject_matches(s, subject) for s in r[0])]
            if not found:
                raise LookupError(f"no route for {subject or kind.__name__}")
            self._by_type[kind] = found[0]
        return self._by_type[kind]

    async def __call__(self, conn: asyncpg.Connection, events: list[Event], now: datetime) -> list:
        split: dict[int, list[Event]] = {}
        for event in events:
            split.setdefault(self.index_of(event), []).append(event)
        emitted: list = []
        for i in sorted(split):
            _, handle, batch = self.routes[i]
            if batch:
                emitted += await handle(conn, split[i], now) or []
            else:
                for event in split[i]:
                    emitted += await handle(conn, event, now) or []
        return emitted


def _subjects(subject: str | tuple[str, ...]) -> tuple[str, ...]:
    return (subject,) if isinstance(subject, str) else tuple(subject)
