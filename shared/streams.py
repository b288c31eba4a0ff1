"""JetStream streams and consumer defaults; declared idempotently by the runner and each service."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from shared import subjects as s
from shared.partitions import DEFAULT_PARTITIONS, subject_transform

DAY = 86_400.0
EVENTS_DAYS = 365.0  # the longest the event log is kept …
RETENTION_DAYS = 180.0  # … and never longer than a reporter's personal data (WHISTLE_REPORTER_RETENTION_DAYS)


def stream_configs(replicas: int = 1, partitions: int = DEFAULT_PARTITIONS,
                   retention_days: float = RETENTION_DAYS) -> list[StreamConfig]:
    """The four streams: domain events (stored with their whistle's partition), SLA clock schedules,
    dead letters, advisories.

    whistle.blown carries the reporter as given (name, masked phone and e-mail) and free text: the
    events and the dead letters (bodies of events) are kept no longer than the reporters' data may be,
    `retention_days`. A whistle's events are thus gone from the log at most that long after it was blown,
    which is no later than that long after it was struck off."""
    keep = min(EVENTS_DAYS, retention_days) * DAY
    return [
        StreamConfig(
            name=s.EVENTS_STREAM,
            subjects=s.EVENTS_SUBJECTS,
            subject_transform=subject_transform(partitions),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=keep,
            duplicate_window=120.0,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=s.CLOCKS_STREAM,
            subjects=[f"{s.CLOCK_TIMER}.>", f"{s.CLOCK_DUE}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            # one pending schedule per clock: re-arming a clock replaces its timer
            max_msgs_per_subject=1,
            allow_msg_schedules=True,
            duplicate_window=120.0,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=s.DEADLETTER_STREAM,
            subjects=[f"{s.DEADLETTER}.>"],
            storage=StorageType.FILE,
            max_age=min(90 * DAY, keep),
            num_replicas=replicas,
        ),
        StreamConfig(
            name=s.ADVISORIES_STREAM,
            subjects=[f"{s.MAX_DELIVERIES_ADVISORY}.>"],
            storage=StorageType.FILE,
            max_age=30 * DAY,
            num_replicas=replicas,
        ),
    ]


async def ensure_streams(js: JetStreamContext, replicas: int = 1, partitions: int = DEFAULT_PARTITIONS,
                         retention_days: float = RETENTION_DAYS) -> None:
    """Create or update every stream; safe to call from many processes at once."""
    for config in stream_configs(replicas, partitions, retention_days):
        try:
            await js.stream_info(config.name)
            await js.update_stream(config)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError:
                # another process may have created it between our two calls
                try:
                    await js.stream_info(config.name)
                except NotFoundError:
                    raise
                await js.update_stream(config)


async def wait_for_streams(js: JetStreamContext, timeout: float = 120.0) -> None:
    """Wait until every stream exists (a process that may not declare them: whoever may declares them)."""
    deadline = asyncio.get_running_loop().time() + timeout
    for config in stream_configs():
        while True:
            try:
                await js.stream_info(config.name)
                break
            except NotFoundError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)


def filtered(filters: tuple[str, ...]) -> dict:
    """A consumer's filter: one subject, or several (NATS ≥ 2.10's filter_subjects)."""
    if len(filters) > 1:
        return {"filter_subject": None, "filter_subjects": list(filters)}
    return {"filter_subject": filters[0] if filters else None, "filter_subjects": None}


def consumer_config(
    durable: str, *, max_deliver: int, ack_wait_s: float, filters: tuple[str, ...] = ()
) -> ConsumerConfig:
    """A durable pull consumer of `filters` (none: the whole stream): explicit ack, bounded deliveries,
    from the start of the stream."""
    return ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        max_deliver=max_deliver,
        ack_wait=ack_wait_s,
        **filtered(filters),
        max_ack_pending=20_000,
    )
