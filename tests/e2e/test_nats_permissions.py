"""NATS users and permissions (shared/nats_auth.py): a process holding one service's credentials can do
what that service does and nothing else; without credentials it cannot connect at all."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from urllib.parse import urlsplit

import nats
import nats.errors
import pytest
from nats.js.errors import NotFoundError

from shared import subjects
from tests.e2e.conftest import System


def _plain(system: System) -> str:
    """The first server, without credentials."""
    parts = urlsplit(system.nats_url.split(",")[0])
    return f"nats://{parts.hostname}:{parts.port}"


def _url(system: System, user: str) -> str:
    password = json.loads((system.home / "nats-users.json").read_text())[user]
    parts = urlsplit(_plain(system))
    return f"nats://{user}:{password}@{parts.hostname}:{parts.port}"


async def _connect(url: str, errors: list[str]) -> nats.NATS:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(url, error_cb=on_error, allow_reconnect=False, max_reconnect_attempts=0,
                              connect_timeout=3)


async def _violations(errors: list[str], subject: str) -> list[str]:
    for _ in range(40):  # the server's -ERR comes asynchronously
        # nats-py lowercases the server's -ERR text
        found = [e for e in errors if "permissions violation" in e.lower() and subject.lower() in e.lower()]
        if found:
            return found
        await asyncio.sleep(0.05)
    return []


def test_the_credentials_are_the_owners_alone(system: System):
    for name in ("nats-users.json", "nats.conf"):
        mode = stat.S_IMODE((system.home / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))


async def test_without_credentials_nothing_connects(system: System):
    errors: list[str] = []
    with pytest.raises(Exception) as refused:
        await _connect(_plain(system), errors)
    assert "authorization" in (str(refused.value) + " ".join(errors)).lower()
    with pytest.raises(Exception):
        await _connect(_plain(system).replace("nats://", "nats://intake:not-the-password@"), [])


async def test_a_service_cannot_publish_another_services_event(system: System):
    errors: list[str] = []
    nc = await _connect(_url(system, "intake"), errors)
    try:
        js = nc.jetstream(timeout=2)
        assert (await js.stream_info(subjects.EVENTS_STREAM)).config.name == subjects.EVENTS_STREAM  # it may read
        forged = f"summons.resolved.{uuid.uuid4()}"
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await js.publish(forged, b'{"forged": true}')
        assert await _violations(errors, forged)
    finally:
        await nc.close()
    admin = await nats.connect(system.nats_url.split(",")[0])
    try:
        with pytest.raises(NotFoundError):  # nothing reached the stream
            await admin.jetstream().get_last_msg(subjects.EVENTS_STREAM, f"summons.resolved.*.{forged.rsplit('.', 1)[1]}")
    finally:
        await admin.close()


async def test_a_service_cannot_command_another_or_listen_to_its_commands(system: System):
    body = system.signed(subjects.QRY_ESCALATION_POLICIES, {"actor": {"role": "supervisor", "id": "xingcheng-street"},
                                                            "payload": {}})
    errors: list[str] = []
    nc = await _connect(_url(system, "intake"), errors)
    try:
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await nc.request(subjects.QRY_ESCALATION_POLICIES, body, timeout=1.5)
        assert await _violations(errors, subjects.QRY_ESCALATION_POLICIES)
        await nc.subscribe(subjects.CMD_RESPONSE_ACT)  # eavesdropping on another service's commands
        assert await _violations(errors, subjects.CMD_RESPONSE_ACT)
        forward = f"{subjects.RELAY_FORWARD}.escalation"  # rows for escalation's relay to publish as its own
        await nc.publish(forward, b"")
        assert await _violations(errors, forward)
        errors.clear()
        await nc.subscribe(forward)
        assert await _violations(errors, forward)
    finally:
        await nc.close()
    # the same request through the gateway's user is answered: the refusal above is the permission
    gateway = await _connect(_url(system, "gateway"), [])
    try:
        reply = json.loads((await gateway.request(subjects.QRY_ESCALATION_POLICIES, body, timeout=5)).data)
        assert reply["ok"] is True
    finally:
        await gateway.close()


async def test_a_service_cannot_pull_from_reset_or_delete_another_services_consumer(system: System):
    """Routing's credentials: intake's durable is not routing's to take messages from, rewind or remove;
    its lag may be read (the ledger's erasure reads every consumer's ack floor)."""
    theirs = "intake-events-p00"
    errors: list[str] = []
    nc = await _connect(_url(system, "routing"), errors)
    try:
        js = nc.jetstream(timeout=1.5)
        info = await js.consumer_info(subjects.EVENTS_STREAM, theirs)
        assert info.name == theirs
        for attempt in (js.delete_consumer, js.reset_consumer):
            with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                await attempt(subjects.EVENTS_STREAM, theirs)
        await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{subjects.EVENTS_STREAM}.{theirs}", b'{"batch": 1}',
                         reply=nc.new_inbox())
        await nc.flush()
        for verb in ("DELETE", "RESET", "MSG.NEXT"):
            assert await _violations(errors, f"$JS.API.CONSUMER.{verb}.{subjects.EVENTS_STREAM}.{theirs}"), (verb, errors)
        # its own it may: the same calls on routing's own durable are answered (info only, nothing changed)
        assert (await js.consumer_info(subjects.EVENTS_STREAM, "routing-events-p00")).name == "routing-events-p00"
    finally:
        await nc.close()
    admin = await nats.connect(system.nats_url.split(",")[0])
    try:
        assert (await admin.jetstream().consumer_info(subjects.EVENTS_STREAM, theirs)).name == theirs  # still there
    finally:
        await admin.close()


async def test_only_the_admin_may_delete_or_purge_a_stream(system: System):
    for user in ("intake", "ledger", "escalation"):
        errors: list[str] = []
        nc = await _connect(_url(system, user), errors)
        try:
            js = nc.jetstream(timeout=1.5)
            for attempt in (js.delete_stream, js.purge_stream):
                with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                    await attempt(subjects.EVENTS_STREAM)
            assert await _violations(errors, f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}"), errors
        finally:
            await nc.close()
    admin = await nats.connect(system.nats_url.split(",")[0])
    try:
        info = await admin.jetstream().stream_info(subjects.EVENTS_STREAM)
        assert info.state.messages > 0  # still there, nothing purged
    finally:
        await admin.close()
