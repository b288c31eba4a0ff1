"""Partitions on a real nats-server: the partition the stream's subject transform writes is the one
`partition_of` computes, so a service can tell which partition holds a whistle without asking."""

from __future__ import annotations

import asyncio
from collections import Counter
from uuid import uuid4

import nats
from nats.js.api import StreamConfig

from shared.leases import Lease
from shared.partitioned import PartitionedPull, durable_for
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


async def nothing_yet(*_) -> None:  # no floor recorded: from the start
    return None


async def held(lease: Lease) -> bool:  # noqa: ARG001
    return True


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


async def test_a_delivery_lost_on_the_way_comes_again_before_the_ones_after_it(infra) -> None:
    """A delivery that never reaches the partition's puller (a NATS node died with it; here another
    request takes it) is a gap in the consumer sequence: the puller goes back to the acknowledgement
    floor, so the lost message is handled before those after it, not after its ack wait."""
    nc = await nats.connect(infra["nats_url"])
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="LOSSY", subjects=["lossy.>"], subject_transform=subject_transform(16)))
        p = 5
        ids = [i for i in (str(uuid4()) for _ in range(2000)) if partition_of(i, 16) == p][:60]
        pull = PartitionedPull(nc, js, "LOSSY", "lossy", ("lossy.>",), batch=10,
                               config=consumer_config("lossy", max_deliver=5, ack_wait_s=60), floor=nothing_yet,
                               holds=held)
        await pull.add(Lease(p, 1))
        stolen: list = []

        async def steal(msg) -> None:
            stolen.append(msg)

        thief = await nc.subscribe(nc.new_inbox(), cb=steal)
        await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.LOSSY.{durable_for('lossy', p)}",
                         b'{"batch": 1, "expires": 5000000000}', reply=thief.subject)
        await nc.flush()
        seqs = [(await js.publish(published_subject("lossy.blown", i), b"{}")).seq for i in ids]
        taken: list[int] = []
        deadline = asyncio.get_running_loop().time() + 20  # well inside the ack wait
        while len(set(taken)) < len(seqs) and asyncio.get_running_loop().time() < deadline:
            for m in await pull.next_batch(wait_s=0.5):
                taken.append(m.metadata.sequence.stream)
                await m.ack()
        await pull.stop()
        assert [m for m in stolen if not m.headers or "Status" not in m.headers], "the other request got none"
        first = list(dict.fromkeys(taken))  # a message handled twice is the inbox's to drop
        assert first == seqs
    finally:
        await nc.close()
