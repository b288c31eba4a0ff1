"""Response's requests as data: each subject declared with its payload model and roles; what the gateway, its
console and the CLI send validates against them; one vocabulary of summons moves everywhere."""

from __future__ import annotations

import json
from datetime import timedelta
from unittest.mock import patch

import pytest
from typer.testing import CliRunner

from services.gateway.console import labels, responder
from services.response import domain
from services.response.app import build
from services.response.settings import ResponseSettings
from shared import subjects
from shared.commands import SummonsAction
from shared.contracts import SUPERSEDED, Command, Reply, SummonsMove, SummonsState
from shared.ids import utcnow
from shared.runtime import Request, ServiceRuntime
from tests.signing import answering, signed
from tests.unit.test_gateway_api import as_, client

RESPONSE = {v for k, v in vars(subjects).items() if k.startswith(("CMD_RESPONSE_", "QRY_RESPONSE_"))}
SUMMONS = "0195f0a0-0000-7000-8000-000000000002"
WHISTLE = "0195f0a0-0000-7000-8000-000000000001"


def declared() -> dict[str, Request]:
    """Response's request table, as `build()` declares it (nothing connects)."""
    seen: dict[str, Request] = {}
    with patch.object(ServiceRuntime, "serve", lambda _, *requests: seen.update({r.subject: r for r in requests})):
        build(ResponseSettings(link_secret="unit-secret-" + "k" * 32))
    return seen


TABLE = declared()


def admit(subject: str, payload: dict | None = None, role: str = "dispatcher", who: str = "u1") -> Command | Reply:
    """What the runtime makes of a request before the handler: the typed command, or the refusal."""
    return answering().admit(TABLE[subject], signed(subject, {"actor": {"role": role, "id": who}, "payload": payload or {}}))


def test_every_response_subject_is_declared_with_a_model_and_roles() -> None:
    assert set(TABLE) == RESPONSE
    for request in TABLE.values():  # each says who may ask, refuses what it does not name, and says what it is
        assert request.roles and request.payload.model_config.get("extra") == "forbid" and request.payload.__doc__
        assert (request.handle.__doc__ or "").strip()  # the bound handlers keep the docstring the document shows


@pytest.mark.parametrize(("subject", "refused", "code"), [
    (subjects.CMD_RESPONSE_ACT, ["dispatcher", "supervisor", "resident", "system"], "forbidden"),
    (subjects.CMD_RESPONSE_EXTENSION, ["dispatcher", "supervisor", "resident", "system"], "forbidden"),
    (subjects.CMD_RESPONSE_EXTENSION_DECISION, ["dispatcher", "responder", "resident", "system"], "supervisor_only"),
    (subjects.CMD_RESPONSE_VERIFY, ["supervisor", "responder", "resident", "system"], "forbidden"),
    (subjects.CMD_RESPONSE_FOLLOW_UP, ["supervisor", "responder", "system"], "forbidden"),
    (subjects.QRY_RESPONSE_FOLLOW_UP_LINK, ["dispatcher", "supervisor", "responder", "system"], "forbidden"),
    (subjects.QRY_RESPONSE_FOLLOW_UP_TOKEN, ["dispatcher", "supervisor", "responder", "resident"], "forbidden"),
    (subjects.QRY_RESPONSE_SUMMONS, ["resident", "system"], "forbidden"),
])
def test_a_role_that_may_not_ask_is_refused_403_before_the_payload_is_looked_at(subject, refused, code) -> None:
    for role in refused:
        reply = admit(subject, {"anything": 1}, role)
        assert isinstance(reply, Reply) and reply.refusal.status == 403 and reply.refusal.code == code, role
        assert " / " in reply.refusal.reason  # english / 中文


@pytest.mark.parametrize(("subject", "role", "payload", "field"), [
    (subjects.CMD_RESPONSE_ACT, "responder", {"summons_id": SUMMONS, "action": "fly"}, "action"),
    (subjects.CMD_RESPONSE_ACT, "responder", {"summons_id": SUMMONS, "action": "report", "by": "me"}, "by"),
    (subjects.CMD_RESPONSE_ACT, "responder", {"summons_id": SUMMONS, "action": "return"}, "reason_code"),
    (subjects.CMD_RESPONSE_EXTENSION, "responder", {"summons_id": SUMMONS, "reason": "x",
                                                    "new_deadline": "2030-01-01T00:00:00"}, "new_deadline"),
    (subjects.CMD_RESPONSE_EXTENSION_DECISION, "supervisor", {"summons_id": SUMMONS, "decision": "maybe"},
     "decision"),
    (subjects.CMD_RESPONSE_VERIFY, "dispatcher", {}, "whistle_id"),
    (subjects.CMD_RESPONSE_FOLLOW_UP, "dispatcher", {"whistle_id": WHISTLE, "solved": True,
                                                     "satisfaction": "meh"}, "satisfaction"),
    (subjects.CMD_RESPONSE_FOLLOW_UP, "resident", {"token": "x" * 65, "solved": True,
                                                   "satisfaction": "satisfied"}, "token"),
    (subjects.QRY_RESPONSE_FOLLOW_UP_LINK, "resident", {}, "token"),
    (subjects.QRY_RESPONSE_FOLLOW_UP_TOKEN, "system", {"whistle_id": 7}, "whistle_id"),
    (subjects.QRY_RESPONSE_SUMMONS, "responder", {"limit": 1001}, "limit"),
    (subjects.QRY_RESPONSE_SUMMONS, "responder", {"limit": 10, "responder_id": "d-police"}, "responder_id"),
])
def test_a_payload_off_its_model_is_422_naming_the_field(subject, role, payload, field) -> None:
    reply = admit(subject, payload, role)
    assert isinstance(reply, Reply) and reply.refusal.status == 422 and reply.refusal.field == field, reply


def test_the_handlers_get_the_payload_typed() -> None:
    cmd = admit(subjects.CMD_RESPONSE_ACT, {"summons_id": SUMMONS, "action": "return", "reason_code": "wrong_area"},
                "responder")
    assert isinstance(cmd, Command) and cmd.payload.action is SummonsMove.return_
    assert cmd.payload.details() == {"reason_code": "wrong_area", "reason": None}
    page = admit(subjects.QRY_RESPONSE_SUMMONS, {}, "supervisor")
    assert (page.payload.limit, page.payload.cursor) == (100, None)


# --- one vocabulary -------------------------------------------------------------------------------------------------


def test_one_vocabulary_of_summons_moves() -> None:
    for move in SummonsMove:  # the command takes each, the domain knows each, the console names each
        assert SummonsAction(summons_id="s", action=move.value, **(
            {"reason_code": "wrong_area"} if move is SummonsMove.return_ else
            {"to_responder_id": "d", "reason": "x"} if move is SummonsMove.transfer else {})).action is move
        assert move in domain.WAITS or any(m is move for _, m in domain.TRANSITIONS)
        assert move in labels.MOVES and move in responder.MOVES
    assert set(labels.MOVES) == set(responder.MOVES) == {*SummonsMove, "extension"}


def test_superseded_is_the_returned_and_the_transferred_for_response_and_the_ledger() -> None:
    from services.ledger.domain import whistle_status

    assert SUPERSEDED == {SummonsState.returned, SummonsState.transferred} and domain.SUPERSEDED is SUPERSEDED
    assert whistle_status(["returned", "transferred", "resolved"]) == "resolved"


# --- what the gateway, the console and the CLI send -----------------------------------------------------------------

GATEWAY = [  # (role, method, path, body): each call that asks response
    ("dispatcher", "POST", "/v1/whistles/w1/verify", {"note": "ok", "photo_url": "https://example.org/1.jpg"}),
    ("dispatcher", "POST", "/v1/whistles/w1/verify", None),
    ("dispatcher", "POST", "/v1/whistles/w1/follow-up", {"solved": True, "satisfaction": "satisfied", "note": "n"}),
    ("responder", "GET", "/v1/summons?limit=5&cursor=WyJhIl0", None),
    ("supervisor", "GET", "/v1/summons", None),
    *[("responder", "POST", f"/v1/summons/s1/{move.value}", None)
      for move in (SummonsMove.report, SummonsMove.arrive, SummonsMove.pause, SummonsMove.resume)],
    ("responder", "POST", "/v1/summons/s1/resolve", {"photo_url": "https://example.org/fixed.jpg"}),
    ("responder", "POST", "/v1/summons/s1/return", {"reason_code": "other", "reason": "not ours"}),
    ("responder", "POST", "/v1/summons/s1/extension", {"new_deadline": (utcnow() + timedelta(days=30)).isoformat(),
                                                       "reason": "x"}),
    ("supervisor", "POST", "/v1/summons/s1/extension/grant", {"note": "ok"}),
    ("supervisor", "POST", "/v1/summons/s1/extension/refuse", None),
    (None, "POST", "/r/link-token-1", {"solved": False, "satisfaction": "dissatisfied"}),
    (None, "GET", "/r/link-token-1", None),
]


@pytest.mark.parametrize(("role", "method", "path", "body"), GATEWAY)
async def test_what_the_gateway_sends_response_validates_against_the_declared_model(role, method, path, body) -> None:
    # the gateway against a fake bus that records what each call sends
    http, nats = client({subjects.QRY_RESPONSE_SUMMONS: Reply.success({"items": [], "next_cursor": None})})
    async with http:
        r = await http.request(method, path, json=body, headers=as_(role) if role else {})
    assert r.status_code < 300, r.text
    asked = [(s, sent) for s, sent, _ in nats.sent if s in RESPONSE]
    assert asked, nats.sent
    for subject, sent in asked:
        admitted = answering().admit(TABLE[subject], sent)  # signed by the gateway's bus
        assert isinstance(admitted, Command), (subject, sent["payload"], admitted)


async def test_a_move_outside_the_vocabulary_is_refused_at_the_gateway() -> None:
    http, nats = client()
    async with http:
        r = await http.post("/v1/summons/s1/fly", headers=as_("responder"))
    assert r.status_code == 422 and r.json()["error"]["field"] == "action" and nats.sent == []


def test_what_the_cli_sends_validates_against_the_declared_models() -> None:
    from services.cli import main

    calls: list[tuple] = []
    with patch.object(main, "_call", lambda *args, **_: calls.append(args)):
        runner = CliRunner()
        for move in ("report", "arrive", "resolve"):
            assert runner.invoke(main.app, ["summons", move, SUMMONS, "--as", "d-housing", "--note", "n"]).exit_code == 0
        assert runner.invoke(main.app, ["verify", WHISTLE, "--note", "ok"]).exit_code == 0
        too_long = runner.invoke(main.app, ["verify", WHISTLE, "--note", "x" * 1001])
    assert too_long.exit_code == 1 and json.loads(too_long.stdout)["error"]["field"] == "note"
    assert [c[1:] for c in calls] == [
        ("POST", f"/v1/summons/{SUMMONS}/report", {"note": "n"}), ("POST", f"/v1/summons/{SUMMONS}/arrive", {"note": "n"}),
        ("POST", f"/v1/summons/{SUMMONS}/resolve", {"note": "n"}), ("POST", f"/v1/whistles/{WHISTLE}/verify", {"note": "ok"}),
    ]
    for _, _, path, body in calls:  # as the gateway forwards them
        if "/summons/" in path:
            cmd = admit(subjects.CMD_RESPONSE_ACT, {"summons_id": SUMMONS, "action": path.rsplit("/", 1)[1], **body},
                        "responder")
        else:
            cmd = admit(subjects.CMD_RESPONSE_VERIFY, {"whistle_id": WHISTLE, **body}, "dispatcher")
        assert isinstance(cmd, Command), cmd
