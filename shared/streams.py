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


def stream_configs(replicas: int = 1, partitions: int = DEFAULT_PARTITIONS) -> list[StreamConfig]:
    """The four streams: domain events (stored with their whistle's partition), SLA clock schedules,
    dead letters, advisories."""
    return [
        StreamConfig(
            name=s.EVENTS_STREAM,
            subjects=s.EVENTS_SUBJECTS,
            subject_transform=subject_transform(partitions),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=365 * DAY,
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
            max_age=90 * DAY,
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


async def ensure_streams(js: JetStreamContext, replicas: int = 1, partitions: int = DEFAULT_PARTITIONS) -> None:
    """Create or update every stream; safe to call from many processes at once."""
    for config in stream_configs(replicas, partitions):
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
