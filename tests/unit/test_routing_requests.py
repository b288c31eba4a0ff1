"""Routing's requests as data: each subject declared with its payload model and roles, what the gateway and the
CLI send validating against them, and the runtime refusing the rest before a handler runs."""

from __future__ import annotations

import json
from types import SimpleNamespace
from unittest.mock import patch

import pytest

from services.cli import console_accounts
from services.routing.app import build
from services.routing.registry import DEFAULT_REGISTRY, load_registry
from services.routing.responders import RegistryHandlers
from shared import subjects
from shared.community import BUILDINGS
from shared.contracts import Command, Reply
from shared.runtime import Request, ServiceRuntime
from tests.signing import SIGNERS, answering, signed
from tests.unit.test_gateway_api import as_, client

ROUTING = {v for k, v in vars(subjects).items() if k.startswith(("CMD_ROUTING_", "QRY_ROUTING_"))}


def declared() -> dict[str, Request]:
    """Routing's request table, as `build()` declares it (nothing connects)."""
    seen: dict[str, Request] = {}
    with patch.object(ServiceRuntime, "serve", lambda _, *requests: seen.update({r.subject: r for r in requests})):
        build()
    return seen


TABLE = declared()


def admit(subject: str, payload: dict | None = None, role: str = "supervisor", who: str = "u1") -> Command | Reply:
    """What the runtime makes of a request before the handler: the typed command, or the refusal."""
    return answering().admit(TABLE[subject], signed(subject, {"actor": {"role": role, "id": who}, "payload": payload or {}}))


def test_every_routing_subject_is_declared_with_a_model_and_roles_or_is_open_to_any_caller() -> None:
    assert set(TABLE) == ROUTING
    open_to_all = {s for s, r in TABLE.items() if r.roles is None}
    assert open_to_all == {subjects.QRY_ROUTING_BUILDINGS, subjects.QRY_ROUTING_GRIDS, subjects.QRY_ROUTING_PLACE}
    for request in TABLE.values():  # every model refuses what it does not name, and says what it is
        assert request.payload.model_config.get("extra") == "forbid" and request.payload.__doc__


@pytest.mark.parametrize(("subject", "refused", "code"), [
    (subjects.QRY_ROUTING_RESPONDERS, ["responder", "resident", "system"], "forbidden"),
    (subjects.QRY_ROUTING_RESPONDER_ONE, ["resident", "system"], "forbidden"),
    (subjects.CMD_ROUTING_RESPONDER_PUT, ["dispatcher", "responder", "system"], "supervisor_only"),
    (subjects.CMD_ROUTING_ARBITRATE, ["dispatcher", "responder", "system"], "supervisor_only"),
    (subjects.CMD_ROUTING_PASSWORD_SET, ["dispatcher", "responder"], "supervisor_only"),
    (subjects.QRY_ROUTING_ACCOUNTS, ["dispatcher", "responder"], "supervisor_only"),
    (subjects.QRY_ROUTING_KNOWN, ["dispatcher", "responder", "resident"], "supervisor_only"),
    (subjects.QRY_ROUTING_EXPLAIN, ["responder", "resident", "system"], "forbidden"),
    (subjects.QRY_ROUTING_RESPONDER, ["resident"], "forbidden"),
    (subjects.CMD_ROUTING_SIGNIN_CHECK, ["dispatcher", "supervisor", "responder"], "forbidden"),
    (subjects.CMD_ROUTING_SIGNIN_LINK, ["supervisor", "responder"], "forbidden"),
    (subjects.CMD_ROUTING_SIGNIN_LINK_USE, ["supervisor", "responder"], "forbidden"),
])
def test_a_role_that_may_not_ask_is_refused_403_before_the_payload_is_looked_at(subject, refused, code) -> None:
    for role in refused:
        reply = admit(subject, {"anything": 1}, role)
        assert isinstance(reply, Reply) and reply.refusal.status == 403 and reply.refusal.code == code, role
        assert " / " in reply.refusal.reason  # english / 中文


@pytest.mark.parametrize(("subject", "payload", "field"), [
    (subjects.QRY_ROUTING_RESPONDERS, {"limit": 10, "colour": "red"}, "colour"),
    (subjects.QRY_ROUTING_RESPONDERS, {"limit": True}, "limit"),
    (subjects.QRY_ROUTING_RESPONDERS, {"kind": "mayor"}, "kind"),
    (subjects.QRY_ROUTING_RESPONDER_ONE, {}, "id"),
    (subjects.QRY_ROUTING_RESPONDER_ONE, {"id": "x" * 65}, "id"),
    (subjects.CMD_ROUTING_RESPONDER_PUT, {"id": "a b", "kind": "department", "name_en": "x", "name_zh": "x"}, "id"),
    (subjects.CMD_ROUTING_ARBITRATE, {"whistle_id": "w", "responder_id": "r", "by": "me"}, "by"),
    (subjects.QRY_ROUTING_ACCOUNTS, {"role": "mayor"}, "role"),
    (subjects.QRY_ROUTING_EXPLAIN, {"id": 7}, "id"),
])
def test_a_payload_off_its_model_is_422_naming_the_field(subject, payload, field) -> None:
    reply = admit(subject, payload, "supervisor")
    assert isinstance(reply, Reply) and reply.refusal.status == 422 and reply.refusal.field == field, reply


async def test_a_responder_reads_its_own_record_only_dispatchers_and_supervisors_any() -> None:
    editing = RegistryHandlers(SimpleNamespace(registry=load_registry(DEFAULT_REGISTRY)), BUILDINGS)

    async def get(role: str, who: str, rid: str) -> Reply:
        cmd = admit(subjects.QRY_ROUTING_RESPONDER_ONE, {"id": rid}, role, who)
        return cmd if isinstance(cmd, Reply) else await editing.get(None, cmd)

    assert (await get("responder", "d-property", "d-property")).data["id"] == "d-property"
    for role, who in (("dispatcher", "dispatcher"), ("supervisor", "xingcheng-street")):
        assert (await get(role, who, "d-property")).data["id"] == "d-property"
    for rid in ("d-police", "no-such-one"):  # someone else's, or no one's: the same refusal, no probing
        other = await get("responder", "d-property", rid)
        assert other.refusal.status == 403 and other.refusal.code == "forbidden" and " / " in other.refusal.reason
    assert (await get("supervisor", "xingcheng-street", "no-such-one")).refusal.status == 404


GATEWAY = [  # (role, method, path, body): each /v1 call that asks routing
    ("dispatcher", "GET", "/v1/buildings", None),
    ("responder", "GET", "/v1/grids", None),
    ("supervisor", "GET", "/v1/responders?kind=member&branch=10&building=22&limit=5&offset=3&cursor=WyJhIl0", None),
    ("dispatcher", "GET", "/v1/responders", None),
    ("supervisor", "GET", "/v1/responders/d-police", None),
    ("supervisor", "PUT", "/v1/responders/r1", {"kind": "department", "name_en": "x", "name_zh": "x",
                                                "availability": ["mon-fri 09:00-17:00"]}),
    ("supervisor", "POST", "/v1/whistles/w1/arbitrate", {"responder_id": "s-urban", "note": "审定"}),
    ("dispatcher", "GET", "/v1/whistles/w1/routing", None),
    ("responder", "POST", "/v1/summons/s1/transfer", {"to_responder_id": "d-police", "reason": "x"}),
]


@pytest.mark.parametrize(("role", "method", "path", "body"), GATEWAY)
async def test_what_the_gateway_sends_routing_validates_against_the_declared_model(role, method, path, body) -> None:
    listed = Reply.success({"items": [], "next_cursor": None, "total": 0})
    http, nats = client({subjects.QRY_ROUTING_RESPONDERS: listed})  # the gateway, on a bus that records what it sends
    async with http:
        r = await http.request(method, path, json=body, headers=as_(role))
    assert r.status_code < 300, r.text
    asked = [(s, sent) for s, sent, _ in nats.sent if s in ROUTING]
    assert asked, nats.sent
    for subject, sent in asked:
        admitted = answering().admit(TABLE[subject], sent)  # signed by the gateway's bus
        assert isinstance(admitted, Command), (subject, sent["payload"], admitted)


async def test_what_whistle_up_sends_for_the_demo_passwords_validates_too() -> None:
    sent: list[tuple[str, bytes]] = []

    class FakeNats:
        async def request(self, subject: str, body: bytes, timeout: float) -> SimpleNamespace:  # noqa: ARG002
            sent.append((subject, body))
            return SimpleNamespace(data=b'{"ok": true, "data": {"accounts": 1}}')

        async def drain(self) -> None:
            pass

    async def connect(*_, **__) -> FakeNats:
        return FakeNats()

    creds = {"base_url": "http://x", "dispatcher": {"id": "dispatcher"}, "supervisor": {"id": "xingcheng-street"},
             "responders": [{"id": "d-housing"}, {"id": "m-b01-secretary"}]}
    with patch.object(console_accounts.nats, "connect", connect):
        await console_accounts.set_demo_passwords("nats://unused", creds, SIGNERS["runner"])
    assert [s for s, _ in sent] == [subjects.CMD_ROUTING_PASSWORD_SET] * 3
    for _, body in sent:
        assert isinstance(answering().admit(TABLE[subjects.CMD_ROUTING_PASSWORD_SET], json.loads(body)), Command)
