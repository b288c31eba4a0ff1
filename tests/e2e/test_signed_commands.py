"""Signed commands (shared/signing.py), end to end: a process holding a service's NATS credentials may
publish what that service asks of others, but an owner carries out only what a known signer signed for
that subject, unchanged, and a service's signature carries only its own system actor. Anything else is
refused 401 and changes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta

import asyncpg
import pytest

from shared import subjects
from shared.ids import utcnow, uuid7
from shared.signing import Signer, Verifier, new_key, pair_keys
from tests.e2e.conftest import ROOT, System, free_port
from tests.e2e.test_nats_permissions import _connect, _url
from tests.signing import wire, with_key


async def _ask(system: System, user: str, subject: str, body: bytes) -> dict:
    """`body` on `subject` over a connection with `user`'s NATS credentials; the owner's reply."""
    nc = await _connect(_url(system, user), [])
    try:
        return json.loads((await nc.request(subject, body, timeout=10)).data)
    finally:
        await nc.close()


async def _count(system: System, sql: str) -> int:
    conn = await asyncpg.connect(host=str(system.home / "pg"), user="postgres", database="postgres")
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def _forgeries(system: System, subject: str, name: str, own: dict, payload: dict) -> dict[str, bytes]:
    """What a process with `name`'s credentials (and perhaps its key) might send instead of its own command."""
    key = system.signer(name)
    secrets = json.loads((system.home / "command-keys.json").read_text())
    given = Verifier.parse(pair_keys(secrets, [name])).keys  # the keys `whistle up` gave it to verify with
    person = {"role": "supervisor", "id": "xingcheng-street"}
    tampered = json.loads(wire(subject, {"actor": own, "payload": payload}, key))
    tampered["payload"] = {**payload, "forged": True}
    other_subject = wire(subjects.QRY_LEDGER_INBOX, {"actor": own, "payload": payload}, key)
    return {
        "unsigned": json.dumps({"actor": own, "payload": payload}).encode(),
        "unsigned as a person": json.dumps({"actor": person, "payload": payload}).encode(),
        "its own key, a person's actor": wire(subject, {"actor": person, "payload": payload}, key),
        "its own key, another service's actor": wire(
            subject, {"actor": {"role": "system", "id": "ledger"}, "payload": payload}, key),
        "its own key, claiming to be the gateway": wire(
            subject, {"actor": person, "payload": payload}, Signer("gateway", key.secret)),
        "the gateway's key it verifies with, used for another owner": with_key(
            subject, {"actor": person, "payload": payload}, "gateway", given[("gateway", name)]),
        "a key of its own making": wire(subject, {"actor": person, "payload": payload},
                                        Signer.parse(f"gateway:{new_key()}")),
        "changed after signing": json.dumps(tampered).encode(),
        "signed for another subject": other_subject,
    }


async def test_a_compromised_service_cannot_forge_an_actor_or_send_an_unsigned_command(system: System) -> None:
    """Routing's credentials (it may publish cmd.notifier.signin_link) and its key: the notifier sends
    nothing it was not asked for by routing, as the system."""
    subject = subjects.CMD_NOTIFIER_SIGNIN_LINK
    payload = {"link_id": str(uuid7()), "recipient_id": "d-housing", "token": "T" * 43,
               "expires_at": (utcnow() + timedelta(minutes=15)).isoformat()}
    before = await _count(system, "SELECT count(*) FROM notifier.notifications")
    for what, body in _forgeries(system, subject, "routing", {"role": "system", "id": "routing"}, payload).items():
        reply = await _ask(system, "routing", subject, body)
        assert reply["ok"] is False and reply["refusal"]["status"] == 401, (what, reply)
        assert reply["refusal"]["code"] in ("unsigned", "bad_signature", "unknown_signer"), (what, reply)
        assert " / " in reply["refusal"]["reason"], reply  # english / 中文
    await asyncio.sleep(0.5)
    assert await _count(system, "SELECT count(*) FROM notifier.notifications") == before  # nothing was done


async def test_a_compromised_notifier_cannot_ask_as_a_person_but_asks_as_itself(system: System) -> None:
    subject = subjects.QRY_ROUTING_KNOWN
    payload = {"id": "d-housing"}
    own = {"role": "system", "id": "notifier"}
    for what, body in _forgeries(system, subject, "notifier", own, payload).items():
        reply = await _ask(system, "notifier", subject, body)
        assert reply["ok"] is False and reply["refusal"]["status"] == 401, (what, reply)
    # the same query, signed with the notifier's key as itself, is answered: the refusals were the signature
    reply = await _ask(system, "notifier", subject, wire(subject, {"actor": own, "payload": payload},
                                                         system.signer("notifier")))
    assert reply["ok"] is True and reply["data"]["responder"], reply


async def test_an_unsigned_blow_is_refused_and_raises_no_whistle(system: System) -> None:
    """Intake's blow endpoint (outside the runtime) verifies too."""
    blow = {"category": "roof_leak", "description": "forged / 伪造", "location": {"building": "7"}}
    before = await _count(system, "SELECT count(*) FROM intake.whistles")
    person = {"role": "dispatcher", "id": "community-7"}
    for body in (json.dumps({"actor": person, "payload": blow}).encode(),
                 wire(subjects.CMD_INTAKE_BLOW, {"actor": person, "payload": blow}, system.signer("notifier"))):
        reply = await _ask(system, "gateway", subjects.CMD_INTAKE_BLOW, body)
        assert reply["ok"] is False and reply["refusal"]["status"] == 401, reply
    assert await _count(system, "SELECT count(*) FROM intake.whistles") == before
    signed = system.signed(subjects.CMD_INTAKE_BLOW, {"actor": person, "payload": blow})
    assert (await _ask(system, "gateway", subjects.CMD_INTAKE_BLOW, signed))["ok"] is True


def test_the_command_keys_are_the_owners_alone(system: System) -> None:
    assert os.stat(system.home / "command-keys.json").st_mode & 0o077 == 0


@pytest.mark.parametrize(("module", "missing"), [
    ("services.gateway", "WHISTLE_COMMAND_KEY is not set"),
    ("services.intake", "WHISTLE_COMMAND_VERIFY_KEYS is not set"),
    ("services.notifier", "WHISTLE_COMMAND_KEY is not set"),  # it signs what it asks routing, intake and response
])
def test_a_process_without_its_keys_refuses_to_start(module: str, missing: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_COMMAND_")}
    env.update(WHISTLE_AUTH_SECRET="s" * 40, GATEWAY_PORT=str(free_port()), NATS_URL="nats://127.0.0.1:1",
               DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    if module == "services.notifier":
        env["WHISTLE_COMMAND_VERIFY_KEYS"] = pair_keys({"gateway": new_key()}, ["notifier"])  # keys to verify, but none to sign with
    done = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert missing in done.stderr and "refuses to start" in done.stderr and "Traceback" not in done.stderr
