"""The sender: makes one attempt on its channel for each notification due (a bounded number at once),
and records every answer with its event (notification.sent / notification.failed) in one statement
per handful of answers.

A notification due at once is written already claimed by the consumer that makes it and handed to
the sender in memory when that transaction commits (the `Handoff`); the rest (later steps, retries,
rows a crash or a full hand-off left) are claimed from the table. Either way the row is leased (its
`next_at` moves past the attempt's time limit) and its attempt counted before the attempt goes out,
so another replica skips it and, should this process die, it comes due again after the lease: the
only repeats a receiver sees are the attempts that were out at the kill, with the same message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter, Gauge, Histogram

from services.notifier import signin, store
from services.notifier.acks import ack_link
from services.notifier.channels import Channel, Delivery
from services.notifier.domain import (
    RESIDENT,
    Answer,
    Backoff,
    State,
    Verdict,
    after_attempt,
    mask,
)
from services.notifier.messages import render
from shared import subjects
from shared.contracts import Actor, NotificationFailed, NotificationSent, Reply
from shared.ids import utcnow
from shared.runtime import TRANSIENT, ServiceRuntime

log = structlog.get_logger("notifier")
NOTIFICATIONS = Counter("whistle_notifications_total", "Notification attempts by channel and outcome"
                        " (delivered, retry, failed)", ["channel", "outcome"])
ATTEMPT_SECONDS = Histogram("whistle_notification_attempt_seconds", "One attempt's time on its channel", ["channel"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PENDING = Gauge("whistle_notifications_pending", "Notifications waiting to be sent or retried", ["service"])
SYSTEM = Actor(role="system", id="notifier")
FLUSH_MOST = 1000  # answers recorded per transaction
RECORDERS = 3  # recording transactions at once: slots come free while the previous batch commits


def category_names(path: Path) -> dict[str, tuple[str, str]]:
    """Category code → (Chinese, English) names, from the service catalogue."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {c["code"]: (c["name_zh"], c["name_en"]) for c in data["categories"]}


class Handoff:
    """Notifications a consumer writes already claimed for this process, held until its transaction
    commits (the commit's NOTIFY carries their token; a rolled-back one sends none), then sent
    without a claim query. Only what the sender can start soon is taken: rows kept in memory past
    `fresh_s` of their lease are dropped, and come back from the table once the lease ends."""

    def __init__(self, most: int, lease_s: float, fresh_s: float):
        self.most, self.lease_s, self.fresh_s = most, lease_s, fresh_s
        self.closed = True  # until the sender listens: a commit's NOTIFY must find it
        self.held = 0  # reserved rows: waiting for their commit or for a free slot
        self._prefix = uuid.uuid4().hex[:12]  # another replica's tokens are not ours
        self._count = 0
        self._waiting: dict[str, tuple[datetime, int, list[dict]]] = {}  # token -> (leased at, reserved, rows)
        self._ready: deque[tuple[datetime, dict]] = deque()

    def reserve(self, n: int, now: datetime) -> tuple[str, int]:
        """Room for up to `n` rows leased at `now`: (token, how many), ("", 0) when full."""
        k = 0 if self.closed else max(0, min(n, self.most - self.held))
        if not k:
            return "", 0
        self._count += 1
        token = f"{self._prefix}.{self._count}"
        self.held += k
        self._waiting[token] = (now, k, [])
        return token, k

    def stash(self, token: str, rows: list[dict]) -> None:
        """The rows the statement wrote (fewer than reserved when a redelivery found them there)."""
        if token not in self._waiting:  # expired meanwhile: the table has them once the lease ends
            return
        at, k, _ = self._waiting[token]
        self.held -= k - len(rows)
        self._waiting[token] = (at, len(rows), rows)

    def cancel(self, token: str) -> None:
        self.held -= self._waiting.pop(token, (None, 0, []))[1]

    def committed(self, token: str) -> bool:
        """The token's transaction committed: its rows may go. False for a token not ours."""
        entry = self._waiting.pop(token, None)
        if entry is None:
            return False
        at, _, rows = entry
        self._ready.extend((at, r) for r in rows)
        return True

    @property
    def ready(self) -> bool:
        return bool(self._ready)

    def take(self, most: int, now: datetime) -> list[dict]:
        """Up to `most` committed rows whose lease still leaves an attempt its whole time."""
        out: list[dict] = []
        while self._ready and len(out) < most:
            at, row = self._ready.popleft()
            self.held -= 1
            if (now - at).total_seconds() <= self.fresh_s:
                out.append(row)
        return out

    def expire(self, now: datetime) -> None:
        """Forget tokens whose commit never came in time (rolled back, or the NOTIFY missed while the
        listener reconnected): their rows, if any, are the table's once the lease ends."""
        for token in [t for t, (at, _, _) in self._waiting.items() if (now - at).total_seconds() > self.fresh_s]:
            self.cancel(token)


class Sender:
    def __init__(self, runtime: ServiceRuntime, channels: dict[str, Channel], *, names: dict[str, tuple[str, str]],
                 public_base_url: str, concurrency: int, claim_batch: int, poll_s: float, timeout_s: float,
                 max_attempts: int, backoff: Backoff, handoff: Handoff | None = None, link_secret: str = "",
                 ack_link_default_s: float = 86_400.0):
        self.runtime, self.channels, self.names = runtime, channels, names
        self.link_secret, self.ack_link_default_s = link_secret, ack_link_default_s
        self.public = public_base_url.rstrip("/")
        self.concurrency, self.claim_batch, self.poll_s = concurrency, claim_batch, poll_s
        self.timeout_s, self.max_attempts, self.backoff = timeout_s, max_attempts, backoff
        self.lease_s = lease_seconds(timeout_s)
        self.handoff = handoff or Handoff(0, self.lease_s, timeout_s)
        self.out = 0  # claimed and not yet recorded: never more than `concurrency`
        self.answers: list[tuple[Any, State, datetime | None, str, dict, Any]] = []
        self._room = asyncio.Event()
        self._wake = asyncio.Event()
        self._look = True  # the table may hold due rows this sender has not seen
        self._answered = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._attempts: set[asyncio.Task] = set()
        self._listener: asyncpg.Connection | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self, runtime: ServiceRuntime) -> None:
        self._tasks = [asyncio.create_task(self._claim_loop(), name="notifier-claim"),
                       asyncio.create_task(self._record_loop(), name="notifier-record"),
                       asyncio.create_task(self._listen_loop(), name="notifier-listen")]

    async def stop(self) -> None:
        """No more claims; the attempts out finish (or time out) and are recorded."""
        self._stopping = True
        self.handoff.closed = True
        self._wake.set()
        self._room.set()
        if self._attempts:
            await asyncio.wait(self._attempts, timeout=self.timeout_s + 1)
        self._answered.set()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, timeout=5)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    def wake(self, *_: object) -> None:
        self._look = True
        self._wake.set()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        """A commit: a hand-off of ours is ready to go, or rows are in the table."""
        if not (payload and self.handoff.committed(payload)):
            self._look = True
        self._wake.set()

    # --- claiming -------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        """Start attempts while there is room: handed rows first, then due rows from the table, looked
        for when woken by a commit, when the next known row falls due, or every poll_s."""
        failures = 0
        look_at = 0.0  # monotonic time of the next look at the table
        while not self._stopping:
            free = self.concurrency - self.out
            if free <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            now = utcnow()
            self.handoff.expire(now)
            handed = self.handoff.take(free, now)
            if handed:
                self._launch(handed)
                continue
            if self._look or time.monotonic() >= look_at:
                self._look = False
                limit = min(free, self.claim_batch)
                nxt = None
                try:
                    rows = await store.claim(self.runtime.pool, now, limit, self.lease_s)
                    if len(rows) < limit:  # nothing more due now: sleep until the next one, a wake, or poll_s
                        nxt = await store.next_due(self.runtime.pool)
                except TRANSIENT as exc:
                    failures += 1
                    self._look = True
                    self.runtime.stalled("sender", f"claiming: {exc!r}"[:300])
                    await asyncio.sleep(min(0.5 * 2 ** failures, 5.0))
                    continue
                except Exception:
                    self._look = True
                    log.exception("sender.claim_failed")
                    await asyncio.sleep(1.0)
                    continue
                if failures:
                    failures = 0
                    self.runtime.recovered("sender")
                self._launch(rows)
                if len(rows) == limit:
                    self._look = True
                    continue
                wait = self.poll_s
                if nxt is not None:
                    wait = min(max((nxt - utcnow()).total_seconds(), 0.0), self.poll_s)
                look_at = time.monotonic() + wait
            self._wake.clear()  # a wake from now on is for what this round did not see
            if self._look or self.handoff.ready:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(look_at - time.monotonic(), 0.0))

    def _launch(self, rows: list) -> None:
        for row in rows:
            self.out += 1
            task = asyncio.create_task(self._attempt(row))
            self._attempts.add(task)
            task.add_done_callback(self._attempts.discard)

    async def _listen_loop(self) -> None:
        """LISTEN for committed rows due now; reconnects after Postgres restarts (polling covers the gap)."""
        while not self._stopping:
            try:
                if self._listener is None or self._listener.is_closed():
                    self.handoff.closed = True  # a commit now would go unheard: its rows go by the table
                    self._listener = await asyncpg.connect(self.runtime.settings.database_url)
                    await self._listener.add_listener(store.WAKE, self._notified)
                    self.handoff.closed = self._stopping
                    self.wake()  # what was committed while no one listened
                await asyncio.sleep(1.0)
            except Exception as exc:
                log.info("sender.listen_failed", error=repr(exc)[:200])
                self.handoff.closed = True
                self._listener = None
                await asyncio.sleep(2.0)

    # --- one attempt ----------------------------------------------------------------------------

    async def _attempt(self, row: asyncpg.Record | dict) -> None:
        started = time.perf_counter()
        address = row["target"].get("address")
        try:
            delivery = await self._delivery(row)
            if isinstance(delivery, Answer):
                answer = delivery
            else:
                address = delivery.address
                answer = await asyncio.wait_for(self.channels[row["channel"]].send(delivery), self.timeout_s + 1)
        except (asyncio.TimeoutError, TimeoutError):
            answer = Answer(Verdict.retry, None, "timed out")
        except Exception as exc:  # a bug must not lose the row: it is retried, and fails after max_attempts
            log.exception("sender.attempt_crashed", notification_id=str(row["id"]))
            answer = Answer(Verdict.retry, None, f"{type(exc).__name__}: {exc}"[:200])
        now = utcnow()
        ms = round((time.perf_counter() - started) * 1e3, 1)
        outcome = after_attempt(answer, row["attempts"], self.max_attempts, now, self.backoff, random.random())
        label = {State.delivered: "delivered", State.pending: "retry"}.get(outcome.state, "failed")
        NOTIFICATIONS.labels(row["channel"], label).inc()
        ATTEMPT_SECONDS.labels(row["channel"]).observe(ms / 1e3)
        shown = mask(row["channel"], address)
        common = dict(
            occurred_at=now, whistle_id=row["whistle_id"], causation_id=row["cause_id"], actor=str(SYSTEM),
            notification_id=row["id"], summons_id=row["summons_id"], kind=row["kind"],
            recipient_id=row["recipient_id"], step=row["step"], channel=row["channel"], address=shown,
            attempt=row["attempts"], status=answer.status, answer=answer.detail[:300] or None,
        )
        event = None  # about no whistle (a sign-in link): no timeline to tell; the attempt log and metrics keep it
        if row["whistle_id"] is not None:
            event = NotificationSent(**common) if outcome.state is State.delivered else NotificationFailed(
                **common, final=outcome.final, retry_at=outcome.next_at)
        entry = {"attempt": row["attempts"], "at": now.isoformat(), "outcome": label, "status": answer.status,
                 "answer": answer.detail[:300], "ms": ms, "address": shown}
        # one canonical line per attempt; the phone, email or key only masked
        log.info("notification.attempt", notification_id=str(row["id"]), whistle_id=str(row["whistle_id"]),
                 kind=row["kind"], channel=row["channel"], address=shown, attempt=row["attempts"], outcome=label,
                 status=answer.status, ms=ms)
        self.answers.append((row["id"], outcome.state, outcome.next_at, answer.detail[:300], entry, event))
        self._answered.set()

    async def _delivery(self, row: asyncpg.Record | dict) -> Delivery | Answer:
        """What to send: the message rendered from the facts; for a resident, the phone (asked of intake)
        and the follow-up link (asked of response), never stored here."""
        target, details = row["target"], row["details"]
        ack = ack_link(self.public, self.link_secret, row, self.ack_link_default_s, utcnow()) if self.link_secret else None
        if ack is not None:
            details = {**(details or {}), "ack_link": ack}
        facts = {"category": row["category"] or row["summons_category"], "location": row["location"],
                 "tier": row["tier"] or row["whistle_tier"], "responder_name": row["responder_name"],
                 "report_deadline": row["report_deadline"], "on_site_deadline": row["on_site_deadline"],
                 "resolve_deadline": row["resolve_deadline"]}
        address = target.get("address")
        if row["recipient_id"] == RESIDENT:
            found = await self._resident(row["whistle_id"])
            if isinstance(found, Answer):
                return found
            address, link = found
        elif row["summons_id"] is not None:
            link = f"{self.public}/console/summons/{row['summons_id']}"
        elif row["kind"] == signin.KIND:
            link = signin.link(self.public, details)
        else:
            link = f"{self.public}/console/whistles/{row['whistle_id']}"
        message = render(row["kind"], facts, details, link, row["locale"], self.names)
        data = {"notification_id": str(row["id"]), "kind": row["kind"],
                "whistle_id": str(row["whistle_id"]) if row["whistle_id"] else None,
                "summons_id": str(row["summons_id"]) if row["summons_id"] else None,
                "recipient_id": row["recipient_id"], "step": row["step"], "category": facts["category"],
                "tier": facts["tier"], "location": facts["location"], "link": link, "details": details,
                "subject": message.subject, "text": message.text,
                "deadline": _iso(facts["report_deadline"])}
        return Delivery(str(row["id"]), row["kind"], address, message, data, target.get("secret"),
                        list(target.get("mention") or []))

    async def _resident(self, whistle_id) -> tuple[str, str] | Answer:
        contact = await self._ask(subjects.QRY_INTAKE_REPORTER_CONTACT, {"whistle_id": str(whistle_id)})
        if isinstance(contact, Answer):
            return contact
        if not contact.ok or not contact.data.get("phone") or not contact.data.get("sms_consent"):
            return Answer(Verdict.refused, None, "the reporter gave no mobile number or did not agree to SMS")
        link = await self._ask(subjects.QRY_RESPONSE_FOLLOW_UP_TOKEN, {"whistle_id": str(whistle_id)})
        if isinstance(link, Answer):
            return link
        if not link.ok:
            return Answer(Verdict.refused, link.refusal.status, f"no follow-up link: {link.refusal.code}")
        return contact.data["phone"], f"{self.public}/r/{link.data['token']}"

    async def _ask(self, subject: str, payload: dict) -> Reply | Answer:
        """A query to the owner over NATS; away or slow: try the notification again later."""
        body = self.runtime.signed(subject, SYSTEM, payload)  # owners verify it (shared/signing.py)
        try:
            msg = await self.runtime.nc.request(subject, body, timeout=5.0)
            return Reply.model_validate_json(msg.data)
        except Exception as exc:
            return Answer(Verdict.retry, None, f"{subject}: {type(exc).__name__}")

    # --- recording ------------------------------------------------------------------------------

    async def _record_loop(self) -> None:
        """Record answers as they come, many per statement (whatever piled up meanwhile), a few
        statements at once so the next answers need not wait for the last commit."""
        recording: set[asyncio.Task] = set()
        while not (self._stopping and not self.answers and not self._attempts and not recording):
            if self.answers and len(recording) < RECORDERS:
                batch = self.answers[:FLUSH_MOST]
                del self.answers[:len(batch)]
                task = asyncio.create_task(self._record_until_done(batch))
                recording.add(task)
                task.add_done_callback(recording.discard)
                task.add_done_callback(lambda _: self._answered.set())
                continue
            self._answered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), 1.0)

    async def _record_until_done(self, batch: list) -> None:
        failures = 0
        while True:
            try:
                await self._record(batch)
                break
            except Exception as exc:
                failures += 1
                if isinstance(exc, TRANSIENT):
                    self.runtime.stalled("sender", f"recording: {exc!r}"[:300])
                else:
                    log.exception("sender.record_failed", size=len(batch))
                await asyncio.sleep(min(0.5 * 2 ** failures, 5.0))
        if failures:
            self.runtime.recovered("sender")
        self.out -= len(batch)
        self._room.set()

    async def _record(self, batch: list) -> None:
        """The answers and their events in one statement (its own transaction)."""
        runtime = self.runtime
        queued = await store.record(runtime.pool, [(i, s, nx, a, e) for i, s, nx, a, e, _ in batch],
                                    [ev for *_, ev in batch if ev is not None], utcnow())
        runtime.relay.handoff(queued)


def lease_seconds(timeout_s: float) -> float:
    """How long a claim holds a row: the resident's attempt asks intake and response first (up to
    2 x 5 s), then the gateway."""
    return 3 * timeout_s + 5


async def count_pending(runtime: ServiceRuntime) -> None:
    PENDING.labels(runtime.name).set(
        await runtime.pool.fetchval("SELECT count(*) FROM notifications WHERE state = 'pending'"))


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None

