"""Ledger's dead-letter handlers: record what could not be handled; list, show and replay it (supervisors)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import structlog
from nats.js.errors import NotFoundError

from services.ledger import dead_letter_store as store
from services.ledger.dead_letters import (
    RECORDERS,
    DeadLetter,
    MaxDeliveries,
    from_advisory,
    replay_msg_id,
    replay_stream,
)
from services.ledger.payloads import DeadLetterList, DeadLetterRef
from shared import paging
from shared.contracts import Command, Reply
from shared.db import OutboxMessage
from shared.runtime import ServiceRuntime

log = structlog.get_logger("ledger")


def _no_such() -> Reply:
    return Reply.refuse(404, "no_such_dead_letter", "no such dead letter / 无此死信")


def _seq(value: object) -> int:
    """A cursor's id (a JSON number)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("a dead letter's id is a number")
    return value


def _id(value: object) -> int | None:
    text = str(value)  # ASCII digits only: '²' is a digit to isdigit(), not to int()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


class DeadLetterHandlers:
    def __init__(self, runtime: ServiceRuntime):
        self.runtime = runtime

    async def on_stray(self, conn: asyncpg.Connection, item: object, now: datetime):  # noqa: ARG002
        """Never reached: a stray's parse refuses it, and the runtime dead-letters it with the reason."""
        raise AssertionError("a stray event was parsed")

    async def on_dead_letter(self, conn: asyncpg.Connection, dl: DeadLetter, now: datetime):  # noqa: ARG002
        """Keep each dead-lettered message with where it came from, whose it is and why it failed."""
        await store.record(conn, dl)
        return []

    async def on_max_deliveries(self, conn: asyncpg.Connection, a: MaxDeliveries, now: datetime):  # noqa: ARG002
        """A consumer used up its deliveries of a message: fetch it by stream sequence and keep it, unless the
        runtime's dead letter for it is already kept (the same row)."""
        if a.consumer in RECORDERS:
            # about a dead letter or an advisory, not a whistle event: recording it would bury the real ones
            log.error("dead_letter.recorder_gave_up", consumer=a.consumer, stream=a.stream, stream_seq=a.stream_seq,
                      deliveries=a.deliveries)
            return []
        subject, body = None, None
        try:  # a NATS fault propagates: the runtime retries it, the record is not written without the message
            raw = await self.runtime.nc.jetstream().get_msg(a.stream, a.stream_seq)
            subject, body = raw.subject, raw.data
        except NotFoundError:  # gone from the stream (aged out, purged): the record still tells what was lost
            pass
        await store.record(conn, from_advisory(a, subject, body))
        return []

    async def dead_letters(self, pool: asyncpg.Pool, cmd: Command[DeadLetterList]) -> Reply:
        """Dead-lettered messages, newest first, a page at a time (supervisors); `replayed` true / false filters."""
        asked = paging.window(cmd.payload.page, 100, _seq)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        rows = await store.dead_letters(pool, cmd.payload.replayed, limit + 1, after[0] if after else None)
        return Reply.success(paging.page(rows, limit, lambda d: (d["id"],)))

    async def dead_letter(self, pool: asyncpg.Pool, cmd: Command[DeadLetterRef]) -> Reply:
        """One dead letter, with its body and replays (supervisors)."""
        dead_letter_id = _id(cmd.payload.id)
        found = await store.dead_letter(pool, dead_letter_id) if dead_letter_id is not None else None
        return Reply.success(found) if found else _no_such()

    async def replay(self, conn: asyncpg.Connection, cmd: Command[DeadLetterRef], now: datetime) -> tuple[Reply, list]:
        """Put a dead letter's message back on its subject, in its stream, for the consumer that failed it.

        Through the outbox, with Nats-Msg-Id `replay-<id>-<n>`: committed with the count, published
        once. Every consumer of the subject gets it again; those that handled it find its event id
        in their inbox and do nothing, so a replay of a handled message changes nothing (supervisors)."""
        dead_letter_id = _id(cmd.payload.id)
        row = await store.lock(conn, dead_letter_id) if dead_letter_id is not None else None
        if row is None:
            return _no_such(), []
        if replay_stream(row["subject"], row["stream"]) is None:
            return Reply.refuse(409, "not_replayable", f"{row['subject']} is not a domain event or clock firing and"
                                " cannot be replayed / 该消息不是领域事件或时钟触发，无法重放"), []
        if row["body"] is None:
            return Reply.refuse(409, "message_gone", "the message was no longer in its stream when it was recorded"
                                " / 记录时消息已不在流中，无法重放"), []
        updated = await store.mark_replayed(conn, dead_letter_id, now)
        message = OutboxMessage(row["subject"], bytes(row["body"]), replay_msg_id(dead_letter_id, updated["replays"]),
                                {"Whistle-Replay-Of": str(dead_letter_id)})
        log.info("dead_letter.replayed", id=dead_letter_id, subject=row["subject"], replays=updated["replays"],
                 actor=str(cmd.actor))
        return Reply.success(store.as_dict(updated)), [message]
