"""Partitions on a real nats-server: the partition the stream's subject transform writes is the one
`partition_of` computes, so a service can tell which partition holds a whistle without asking."""

from __future__ import annotations

import asyncio
from collections import Counter
from uuid import uuid4

import nats
from nats.js.api import StreamConfig

from shared.partitions import (
    partition_filter,
    partition_of,
    published_subject,
    split_stored,
    stored_subject,
    subject_transform,
)
from shared.streams import consumer_config

STREAM = "PARTITIONED"


async def test_the_server_writes_the_partition_partition_of_computes(infra) -> None:
    nc = await nats.connect(infra["nats_url"])
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=STREAM, subjects=["whistle.>", "summons.>"],
                                         subject_transform=subject_transform(16)))
        ids = [str(uuid4()) for _ in range(500)]
        acks = await asyncio.gather(*(js.publish(published_subject("whistle.blown", i), b"{}") for i in ids))
        assert [a.stream for a in acks] == [STREAM] * 500
        written = {}
        for whistle_id, ack in zip(ids, acks, strict=True):
            msg = await js.get_msg(STREAM, ack.seq)
            event_subject, partition, stored_id = split_stored(msg.subject)
            assert (event_subject, stored_id) == ("whistle.blown", whistle_id)
            assert partition == partition_of(whistle_id, 16), msg.subject
            assert msg.subject == stored_subject("whistle.blown", whistle_id, 16)
            written[whistle_id] = partition
        assert len(set(written.values())) == 16  # 500 random ids reach every partition

        # a consumer of one partition gets exactly the whistles partition_of puts there
        p = Counter(written.values()).most_common(1)[0][0]
        durable = f"partition-{p}"
        sub = await js.pull_subscribe(
            partition_filter(p), durable=durable, stream=STREAM,
            config=consumer_config(durable, max_deliver=1, ack_wait_s=5, filters=(partition_filter(p),)),
        )
        got = await sub.fetch(500, timeout=2)
        assert sorted(split_stored(m.subject)[2] for m in got) == sorted(i for i, q in written.items() if q == p)

        # a stored subject put back on the stream (a dead letter's replay) is not partitioned again,
        # and a subject without the id (a publisher not moved over yet) is stored as it comes
        replayed = await js.publish(stored_subject("summons.issued", ids[0], 16), b"{}")
        legacy = await js.publish("summons.issued", b"{}")
        assert (await js.get_msg(STREAM, replayed.seq)).subject == stored_subject("summons.issued", ids[0], 16)
        assert (await js.get_msg(STREAM, legacy.seq)).subject == "summons.issued"
    finally:
        await nc.close()
