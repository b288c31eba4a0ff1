"""The relay's pipelined publisher on a real nats-server: it writes the NATS protocol itself (one
HPUB command per message, a batch at a time), so what JetStream stores must be byte for byte what
was queued, and a message it cannot send whole is refused before anything goes out."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import nats
import pytest

from services.cli.embedded import start_nats
from shared import subjects
from shared.runtime.relay import PipelinedPublisher, PublishFailed
from shared.streams import ensure_streams
from tests.e2e.conftest import free_port


@pytest.fixture
async def js(tmp_path) -> AsyncIterator:
    port = free_port()
    proc: subprocess.Popen = start_nats(tmp_path, port, tmp_path / "nats.log")
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        yield nc, js
    finally:
        await nc.close()
        proc.terminate()
        proc.wait(timeout=10)


def batch(n: int, prefix: str) -> list[tuple[str, bytes, dict[str, str]]]:
    return [
        ("whistle.blown", f'{{"n":{i},"text":"西门噪音扰民 {prefix}"}}'.encode(),
         {"Nats-Msg-Id": f"{prefix}-{i}", "X-Order": str(i)})
        for i in range(n)
    ]


async def stored(js) -> int:
    return (await js.stream_info(subjects.EVENTS_STREAM)).state.messages


async def test_a_batch_is_stored_byte_for_byte_in_order_and_a_resend_is_all_duplicates(js) -> None:
    nc, js = js
    publisher = PipelinedPublisher(nc)
    messages = batch(300, "a")
    await publisher.publish(messages, timeout=10)
    assert await stored(js) == 300
    for seq in (1, 150, 300):
        got = await js.get_msg(subjects.EVENTS_STREAM, seq)
        subject, body, headers = messages[seq - 1]
        assert (got.subject, got.data) == (subject, body)
        assert {k: got.headers[k] for k in headers} == headers
    await publisher.publish(messages, timeout=10)  # Nats-Msg-Id: the copy changes nothing
    assert (publisher.duplicates, await stored(js)) == (300, 300)


@pytest.mark.parametrize("bad", [
    ("whistle.blown", b"{}", {"Nats-Msg-Id": "x\r\nNats-Expected-Stream: other"}),  # a header smuggled in
    ("whistle.blown", b"{}", {"Nats-Msg-Id": "y\n"}),
    ("whistle.blown", b"{}", {"Nats-Msg-Id": "r\rX"}),
    ("whistle blown", b"{}", {"Nats-Msg-Id": "z"}),  # a blank would split the command
    ("", b"{}", {"Nats-Msg-Id": "e"}),
])
async def test_a_message_that_would_break_the_protocol_is_refused_alone_and_never_sent(js, bad) -> None:
    nc, js = js
    publisher = PipelinedPublisher(nc)
    refused = await publisher.publish([*batch(3, "b"), bad, *batch(5, "b")[3:]], timeout=10)
    assert [i for i, _ in refused] == [3] and "cannot publish" in refused[0][1]
    assert await stored(js) == 5  # the others went out, in order
    assert (await js.get_msg(subjects.EVENTS_STREAM, 4)).headers["X-Order"] == "3"
    assert await publisher.publish(batch(2, "c"), timeout=10) == []  # the connection is still good
    assert await stored(js) == 7


async def test_too_big_a_message_is_refused_and_the_connection_kept(js) -> None:
    nc, js = js
    publisher = PipelinedPublisher(nc)
    refused = await publisher.publish(
        [("whistle.blown", b"x" * (nc.max_payload + 1), {"Nats-Msg-Id": "big"}), *batch(1, "d")], timeout=10)
    assert [i for i, _ in refused] == [0] and "max_payload" in refused[0][1]
    assert await publisher.publish(batch(2, "c"), timeout=10) == []
    assert await stored(js) == 3


async def test_a_subject_no_stream_takes_is_refused_by_the_server(js) -> None:
    nc, js = js
    refused = await PipelinedPublisher(nc).publish(
        [*batch(1, "e"), ("nowhere.at.all", b"{}", {"Nats-Msg-Id": "n"})], timeout=10)
    assert refused == [(1, "status 503")]
    assert await stored(js) == 1


async def test_a_batch_sent_while_nats_is_gone_fails_whole(js) -> None:
    nc, js = js
    publisher = PipelinedPublisher(nc)
    await nc.close()
    with pytest.raises(PublishFailed):
        await publisher.publish(batch(2, "f"), timeout=2)
