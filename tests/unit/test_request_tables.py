"""The ledger's, the notifier's and intake's requests as data: what the gateway sends on each subject is
what the owner's `Request` declares (payload model, extra keys refused; the caller's role), and the
runtime refuses the rest before a handler runs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.intake.app import build as build_intake
from services.ledger.app import build as build_ledger
from services.notifier.app import build as build_notifier
from shared import subjects
from shared.contracts import Command, Reply
from shared.runtime import Request, ServiceRuntime
from tests.signing import VERIFIER, signed
from tests.unit.test_gateway_api import as_, client

SECRET_ENV = "x" * 40
OWNERS = {"ledger": build_ledger, "notifier": build_notifier, "intake": build_intake}


def declared(monkeypatch: pytest.MonkeyPatch, build: Callable[[], ServiceRuntime]) -> tuple[ServiceRuntime,
                                                                                              dict[str, Request]]:
    """The service built (nothing started) and the requests it serves, by subject."""
    monkeypatch.setenv("WHISTLE_AUTH_SECRET", SECRET_ENV)
    seen: dict[str, Request] = {}
    original = ServiceRuntime.serve

    def serve(self: ServiceRuntime, *requests: Request) -> None:
        seen.update({r.subject: r for r in requests})
        original(self, *requests)

    monkeypatch.setattr(ServiceRuntime, "serve", serve)
    return build(), seen


@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch) -> dict[str, Request]:
    out: dict[str, Request] = {}
    for build in OWNERS.values():
        out |= declared(monkeypatch, build)[1]
    return out


RULE = {"steps": [{"channel": "sms", "address": "13812341234"}, {"target": "superior", "delay_s": 300}],
        "quiet_hours": {"start": "22:00", "end": "07:00"}}
WHISTLE = "0195f0a0-0000-7000-8000-000000000011"
LISTS = (subjects.QRY_LEDGER_OPEN311, subjects.QRY_LEDGER_WHISTLES, subjects.QRY_INTAKE_CLASSES,
         subjects.QRY_NOTIFIER_NOTIFICATIONS, subjects.QRY_LEDGER_DEADLETTERS, subjects.QRY_LEDGER_AUDIT)
CALLS = [  # (role, method, path, params, body): every gateway route that asks the ledger, the notifier or intake
    ("dispatcher", "GET", "/v1/categories", None, None),
    ("dispatcher", "POST", "/v1/imports", None, {"rows": [{"order_id": "1"}], "partial": True, "first_row": 2}),
    ("supervisor", "GET", "/v1/whistles", {"status": "verified", "limit": 5, "cursor": "WyJhIl0"}, None),
    ("dispatcher", "GET", "/v1/classes", {"status": "raised", "category": "roof_leak", "building": "7"}, None),
    ("responder", "GET", "/v1/whistles/not-a-uuid", None, None),
    ("responder", "GET", "/v1/rates", {"unit": "d-housing", "month": "2026-11"}, None),
    ("dispatcher", "GET", "/v1/rates", {"from": "2026-11-01", "to": "2026-12-01"}, None),
    ("supervisor", "GET", "/v1/rates/ranking", {"month": "2026-11"}, None),
    ("supervisor", "PUT", "/v1/responders/d-housing/contacts", None, RULE),
    ("responder", "GET", "/v1/responders/d-housing/contacts", None, None),
    ("dispatcher", "GET", "/v1/notifications", {"whistle_id": WHISTLE, "responder_id": "d-housing",
                                                "state": "failed", "limit": 3}, None),
    ("supervisor", "POST", f"/v1/whistles/{WHISTLE}/erase-reporter", None, {"reason": "asked / 本人申请"}),
    ("supervisor", "GET", "/v1/audit", {"month": "2026-11", "system": "true", "limit": 5}, None),
    ("supervisor", "POST", "/v1/api-keys", None, {"client": "app", "note": "for the app"}),
    ("supervisor", "DELETE", "/v1/api-keys/app", None, None),
    ("supervisor", "GET", "/v1/dead-letters", {"replayed": "false", "limit": 10}, None),
    ("supervisor", "GET", "/v1/dead-letters/12", None, None),
    ("supervisor", "POST", "/v1/dead-letters/abc/replay", None, None),
    (None, "GET", "/open311/v2/requests.json", {"service_code": "noise,roof_leak", "status": "open",
                                                 "start_date": "2026-11-01", "end_date": "2026-11-20"}, None),
    (None, "GET", "/open311/v2/requests.json", {"service_request_id": f"{WHISTLE},nope", "limit": "7"}, None),
    (None, "GET", f"/open311/v2/requests/{WHISTLE}.xml", None, None),
]


@pytest.mark.parametrize(("role", "method", "path", "params", "body"), CALLS)
async def test_what_the_gateway_sends_is_what_the_owner_declares(tables, role, method, path, params, body) -> None:
    page = Reply.success({"items": [], "next_cursor": None})
    http, nats = client({subject: page for subject in LISTS} | {subjects.QRY_INTAKE_CATEGORIES: Reply.success([])})
    async with http:
        r = await http.request(method, path, params=params, json=body, headers=as_(role) if role else {})
    assert r.status_code < 300 or r.status_code == 404 and "open311" in path, r.text  # the fake has no such request
    asked = [(subject, sent) for subject, sent, _ in nats.sent if subject in tables]
    assert asked, nats.sent
    for subject, sent in asked:
        request = tables[subject]
        assert request.roles is None or sent["actor"]["role"] in request.roles, (subject, sent["actor"])
        request.payload.model_validate(sent["payload"])


async def test_the_open311_post_checks_its_api_key_as_intake_declares(tables) -> None:
    http, nats = client({subjects.QRY_INTAKE_API_KEY_CHECK: Reply.success({"client": "app"}),
                         subjects.QRY_INTAKE_CATEGORIES: Reply.success([])})
    async with http:
        r = await http.post("/open311/v2/requests.json", content=b"api_key=k-1&service_code=none",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400  # no such service: after the key was checked
    (subject, sent, _), *_ = nats.sent
    request = tables[subject]
    assert subject == subjects.QRY_INTAKE_API_KEY_CHECK and sent["actor"]["role"] in request.roles
    assert request.payload.model_validate(sent["payload"]).api_key == "k-1"


def _admitted(runtime: ServiceRuntime, request: Request, role: str, payload: dict) -> Command | Reply:
    runtime.verifier = VERIFIER
    return runtime.admit(request, signed(request.subject, {"actor": {"role": role, "id": "u1"}, "payload": payload}))


@pytest.mark.parametrize(("service", "subject", "role", "payload", "status", "code", "field"), [
    # the role before the payload; only supervisors: supervisor_only
    ("ledger", subjects.QRY_LEDGER_INBOX, "dispatcher", {"bogus": 1}, 403, "supervisor_only", None),
    ("ledger", subjects.CMD_LEDGER_DEADLETTER_REPLAY, "responder", {"id": 1}, 403, "supervisor_only", None),
    ("ledger", subjects.QRY_LEDGER_WHISTLES, "responder", {}, 403, "forbidden", None),
    ("ledger", subjects.QRY_LEDGER_RANKING, "responder", {"month": "2026-11"}, 403, "forbidden", None),
    ("intake", subjects.CMD_INTAKE_API_KEY_ISSUE, "dispatcher", {"client": "app"}, 403, "supervisor_only", None),
    ("intake", subjects.QRY_INTAKE_REPORTER_CONTACT, "dispatcher", {"whistle_id": WHISTLE}, 403, "forbidden", None),
    ("intake", subjects.CMD_INTAKE_REPORTER_ERASE, "dispatcher", {"whistle_id": WHISTLE, "reason": "x"}, 403,
     "supervisor_only", None),
    ("ledger", subjects.QRY_LEDGER_AUDIT, "dispatcher", {"month": "2026-11"}, 403, "supervisor_only", None),
    ("notifier", subjects.CMD_NOTIFIER_URGE, "responder", {"summons_ids": [WHISTLE]}, 403, "forbidden", None),
    ("notifier", subjects.CMD_NOTIFIER_SIGNIN_LINK, "supervisor", {}, 403, "forbidden", None),
    ("notifier", subjects.CMD_NOTIFIER_CONTACTS_PUT, "dispatcher", {"id": "d-housing", "rule": RULE}, 403,
     "forbidden", None),
    # then the payload: 422 naming the field, an extra key included
    ("ledger", subjects.QRY_LEDGER_WHISTLES, "dispatcher", {"status": "lost"}, 422, "invalid", "status"),
    ("ledger", subjects.QRY_LEDGER_BOARD, "system", {"whistle_ids": ["nope"]}, 422, "invalid", "whistle_ids.0"),
    ("ledger", subjects.QRY_LEDGER_INBOX, "supervisor", {"limit": 0}, 422, "invalid", "limit"),
    ("ledger", subjects.QRY_LEDGER_RATES, "dispatcher", {"unit": "community", "year": 2026}, 422, "invalid", "year"),
    ("notifier", subjects.CMD_NOTIFIER_URGE, "dispatcher", {"summons_ids": []}, 422, "invalid", "summons_ids"),
    ("notifier", subjects.QRY_NOTIFIER_NOTIFICATIONS, "supervisor", {"whistle_id": "w1"}, 422, "invalid",
     "whistle_id"),
    ("notifier", subjects.CMD_NOTIFIER_CONTACTS_PUT, "supervisor", {"id": "bad id", "rule": RULE}, 422, "invalid",
     "id"),
    ("intake", subjects.QRY_INTAKE_CLASSES, "dispatcher", {"status": "closed"}, 422, "invalid", "status"),
    ("intake", subjects.CMD_INTAKE_IMPORT, "dispatcher", {"rows": []}, 422, "invalid", "rows"),
    ("intake", subjects.CMD_INTAKE_REPORTER_ERASE, "supervisor", {"whistle_id": WHISTLE, "reason": ""}, 422,
     "invalid", "reason"),
    ("ledger", subjects.QRY_LEDGER_AUDIT, "supervisor", {"limit": 5}, 422, "invalid", "month"),
    ("intake", subjects.CMD_INTAKE_API_KEY_ISSUE, "supervisor", {"client": "a b"}, 422, "invalid", "client"),
    ("intake", subjects.QRY_INTAKE_CATEGORIES, "resident", {"all": True}, 422, "invalid", "all"),
])
def test_the_runtime_refuses_a_role_then_a_payload_before_the_handler(
    monkeypatch, service, subject, role, payload, status, code, field,
) -> None:
    runtime, table = declared(monkeypatch, OWNERS[service])
    refused = _admitted(runtime, table[subject], role, payload)
    assert isinstance(refused, Reply) and refused.refusal is not None, refused
    assert (refused.refusal.status, refused.refusal.code, refused.refusal.field) == (status, code, field)
    assert " / " in refused.refusal.reason or status == 422  # a role refusal says it in English and Chinese


@pytest.mark.parametrize("dead_letter_id", [7, "7", "abc", "²", None])
def test_a_dead_letter_id_that_is_no_number_is_the_handlers_404_not_a_422(monkeypatch, dead_letter_id) -> None:
    runtime, table = declared(monkeypatch, build_ledger)
    admitted = _admitted(runtime, table[subjects.QRY_LEDGER_DEADLETTER], "supervisor", {"id": dead_letter_id})
    assert isinstance(admitted, Command) and admitted.payload.id == dead_letter_id
