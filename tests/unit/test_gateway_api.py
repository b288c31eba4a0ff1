"""The gateway against a fake owner: what each call puts on the bus (Idempotency-Key, expiry, page) and how a
page comes back (the list as before, Link and X-Next-Cursor when there is more)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from services.gateway.api import create_app
from services.gateway.bus import Bus
from services.gateway.revocations import Revocations
from services.gateway.settings import GatewaySettings
from shared import auth, subjects
from shared.contracts import Reply
from shared.ids import utcnow
from shared.signing import GATEWAY
from tests.signing import SIGNERS

SECRET = "unit-secret-of-at-least-32-bytes-long"
KEYS = auth.KeyRing.single(SECRET)  # what the gateway signs and checks with when no WHISTLE_SIGNING_KEYS is set
TIMEOUT = 5.0


class FakeNats:
    """The owners: record every request, answer with `answers[subject]` (or an empty success)."""

    max_payload = 1024 * 1024

    def __init__(self, answers: dict[str, Reply]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, dict, int]] = []

    async def request(self, subject: str, body: bytes, timeout: float) -> SimpleNamespace:  # noqa: ARG002
        self.sent.append((subject, json.loads(body), len(body)))
        reply = self.answers.get(subject, Reply.success({"id": "x", "state": "reported"}))
        return SimpleNamespace(data=reply.model_dump_json().encode())


def client(answers: dict[str, Reply] | None = None) -> tuple[httpx.AsyncClient, FakeNats]:
    bus = Bus("nats://unused", TIMEOUT, SIGNERS[GATEWAY])  # signs as the gateway does
    bus.nc = FakeNats(answers or {})
    app = create_app(GatewaySettings(auth_secret=SecretStr(SECRET), request_timeout_s=TIMEOUT), bus=bus,
                     revocations=Revocations.empty())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw"), bus.nc


def as_(role: str, who: str = "u1", **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth.mint(KEYS, role, who)}", **headers}


WHISTLE = {"category": "roof_leak", "description": "漏雨", "location": {"building": "7"}}
COMMANDS = [  # every command endpoint: (role, method, path, body, subject)
    ("dispatcher", "POST", "/v1/whistles", WHISTLE, subjects.CMD_INTAKE_BLOW),
    ("dispatcher", "POST", "/v1/imports", {"rows": [{"order_id": "1"}]}, subjects.CMD_INTAKE_IMPORT),
    ("dispatcher", "POST", "/v1/whistles/w1/verify", None, subjects.CMD_RESPONSE_VERIFY),
    ("supervisor", "POST", "/v1/whistles/w1/arbitrate", {"responder_id": "r"}, subjects.CMD_ROUTING_ARBITRATE),
    ("dispatcher", "POST", "/v1/whistles/w1/follow-up", {"solved": True, "satisfaction": "satisfied"},
     subjects.CMD_RESPONSE_FOLLOW_UP),
    ("responder", "POST", "/v1/summons/s1/report", None, subjects.CMD_RESPONSE_ACT),
    ("responder", "POST", "/v1/summons/s1/extension", {"new_deadline": (utcnow() + timedelta(days=30)).isoformat(), "reason": "x"},
     subjects.CMD_RESPONSE_EXTENSION),
    ("supervisor", "POST", "/v1/summons/s1/extension/grant", None, subjects.CMD_RESPONSE_EXTENSION_DECISION),
    ("supervisor", "PUT", "/v1/responders/r1", {"kind": "department", "name_en": "x", "name_zh": "x"},
     subjects.CMD_ROUTING_RESPONDER_PUT),
    ("supervisor", "POST", "/v1/api-keys", {"client": "app"}, subjects.CMD_INTAKE_API_KEY_ISSUE),
    ("supervisor", "DELETE", "/v1/api-keys/app", None, subjects.CMD_INTAKE_API_KEY_REVOKE),
    (None, "POST", "/r/link-token-1", {"solved": True, "satisfaction": "satisfied"}, subjects.CMD_RESPONSE_FOLLOW_UP),
]


@pytest.mark.parametrize(("role", "method", "path", "body", "subject"), COMMANDS)
async def test_every_command_carries_its_idempotency_key_and_when_the_gateway_stops_waiting(
    role, method, path, body, subject,
) -> None:
    http, nats = client()
    headers = {"Idempotency-Key": "retry-1"} | (as_(role) if role else {})
    before = utcnow()
    async with http:
        with_key = await http.request(method, path, json=body, headers=headers)
        without = await http.request(method, path, json=body, headers={k: v for k, v in headers.items()
                                                                          if k != "Idempotency-Key"})
    assert with_key.status_code < 300 and without.status_code < 300, with_key.text
    (sent_subject, sent, _), (_, plain, _) = nats.sent
    assert sent_subject == subject and sent["idempotency_key"] and "idempotency_key" not in plain
    if role:  # a resident's key is scoped to its link (below); everyone else's goes as it is
        assert sent["idempotency_key"] == "retry-1"
    for message in (sent, plain):
        expires = datetime.fromisoformat(message["expires_at"])
        assert before + timedelta(seconds=TIMEOUT) <= expires <= utcnow() + timedelta(seconds=TIMEOUT)


async def test_a_blow_keeps_the_key_in_its_payload_too() -> None:
    http, nats = client()
    async with http:
        await http.post("/v1/whistles", json=WHISTLE, headers=as_("dispatcher", **{"Idempotency-Key": "k1"}))
    (_, sent, _), = nats.sent
    assert sent["idempotency_key"] == sent["payload"]["idempotency_key"] == "k1"


@pytest.mark.parametrize(("role", "method", "path", "body", "subject"), COMMANDS)
async def test_an_idempotency_key_over_128_characters_is_422_naming_the_header(role, method, path, body, subject):
    http, nats = client()
    async with http:
        r = await http.request(method, path, json=body,
                               headers={"Idempotency-Key": "k" * 129} | (as_(role) if role else {}))
    assert r.status_code == 422 and r.json()["error"]["field"] == "Idempotency-Key", r.text
    assert nats.sent == []


async def test_a_residents_key_is_its_own_even_when_another_resident_picks_the_same() -> None:
    http, nats = client()
    answer = {"solved": True, "satisfaction": "satisfied"}
    async with http:
        for token in ("link-token-1", "link-token-1", "link-token-2"):
            await http.post(f"/r/{token}", json=answer, headers={"Idempotency-Key": "1"})
    keys = [sent["idempotency_key"] for _, sent, _ in nats.sent]
    assert keys[0] == keys[1] != keys[2] and len(keys[0]) <= 128


async def test_queries_carry_no_key_and_no_expiry() -> None:
    http, nats = client({subjects.QRY_RESPONSE_SUMMONS: Reply.success({"items": [], "next_cursor": None})})
    async with http:
        await http.get("/v1/summons", headers=as_("responder", **{"Idempotency-Key": "k"}))
    (_, sent, _), = nats.sent
    assert "idempotency_key" not in sent and "expires_at" not in sent


LISTS = [  # path, subject, role, how the body looked before pages
    ("/v1/summons", subjects.QRY_RESPONSE_SUMMONS, "responder", lambda rows: rows),
    ("/v1/whistles", subjects.QRY_LEDGER_WHISTLES, "dispatcher", lambda rows: rows),
    ("/v1/classes", subjects.QRY_INTAKE_CLASSES, "dispatcher", lambda rows: rows),
    ("/v1/responders", subjects.QRY_ROUTING_RESPONDERS, "supervisor", lambda rows: {"total": 9, "responders": rows}),
]


@pytest.mark.parametrize(("path", "subject", "role", "before"), LISTS)
async def test_a_page_is_the_body_it_always_was_with_the_next_one_in_link_and_x_next_cursor(
    path, subject, role, before,
) -> None:
    rows = [{"id": "a"}, {"id": "b"}]
    http, nats = client({subject: Reply.success({"items": rows, "next_cursor": "Wy1d", "total": 9})})
    async with http:
        r = await http.get(path, params={"limit": 2, "cursor": "WyJhIl0"}, headers=as_(role))
    assert r.status_code == 200 and r.json() == before(rows)
    assert r.headers["X-Next-Cursor"] == "Wy1d"
    link = r.headers["Link"]
    assert link.startswith(f"<{path}?") and link.endswith('>; rel="next"')
    assert parse_qs(urlsplit(link[1:link.index(">")]).query) == {"limit": ["2"], "cursor": ["Wy1d"]}
    (_, sent, _), = nats.sent
    assert sent["payload"]["limit"] == 2 and sent["payload"]["cursor"] == "WyJhIl0"


@pytest.mark.parametrize(("path", "subject", "role", "before"), LISTS)
async def test_the_last_page_has_no_link_and_a_bad_limit_or_cursor_is_422(path, subject, role, before) -> None:
    http, nats = client({subject: Reply.success({"items": [], "next_cursor": None, "total": 0})})
    async with http:
        last = await http.get(path, headers=as_(role))
        refused = [await http.get(path, params=params, headers=as_(role))
                   for params in ({"limit": 1001}, {"limit": 0}, {"cursor": "not a cursor"}, {"cursor": "x" * 513})]
    assert last.status_code == 200 and "Link" not in last.headers and "X-Next-Cursor" not in last.headers
    assert [r.status_code for r in refused] == [422] * 4
    assert [r.json()["error"]["field"] for r in refused] == ["limit", "limit", "cursor", "cursor"]
    assert len(nats.sent) == 1


async def test_open311_requests_page_the_same_way() -> None:
    http, nats = client({subjects.QRY_LEDGER_OPEN311: Reply.success({"items": [], "next_cursor": "Wy1d"}),
                         subjects.QRY_INTAKE_CATEGORIES: Reply.success([])})
    async with http:
        r = await http.get("/open311/v2/requests.json", params={"limit": "3"})
        bad = await http.get("/open311/v2/requests.json", params={"limit": "²"})
    assert r.status_code == 200 and r.json() == [] and r.headers["X-Next-Cursor"] == "Wy1d"
    assert r.headers["Link"] == '</open311/v2/requests.json?limit=3&cursor=Wy1d>; rel="next"'
    assert bad.status_code == 400 and bad.json()[0]["code"] == 400
    assert nats.sent[0][1]["payload"]["limit"] == 3


async def test_text_postgres_cannot_store_is_422_naming_the_field_and_never_sent() -> None:
    http, nats = client()
    json_ = {"Content-Type": "application/json"}
    async with http:
        nul = await http.post("/v1/imports", headers=as_("dispatcher", **json_),
                              content=b'{"rows": [{"order_id": "a\\u0000b"}]}')
        half = await http.post("/v1/imports", headers=as_("dispatcher", **json_),
                               content=b'{"rows": [{"description": "\\ud800"}]}')
        literal = await http.post("/v1/imports", headers=as_("dispatcher", **json_),
                                  content=b'{"rows": [{"description": "a \\\\u0000 in words"}]}')
    assert nul.status_code == half.status_code == 422 and literal.status_code < 300
    assert nul.json()["error"]["field"] == "rows.0.order_id" and half.json()["error"]["field"] == "rows.0.description"
    assert [sent["payload"]["rows"] for _, sent, _ in nats.sent] == [[{"description": "a \\u0000 in words"}]]


async def test_chinese_goes_on_the_bus_as_utf_8_and_what_cannot_fit_in_a_message_is_413() -> None:
    http, nats = client()
    nats.max_payload = 200_000
    rows = [{"description": "漏" * 1000} for _ in range(40)]  # 120 KB of UTF-8; 240 KB escaped
    async with http:
        fits = await http.post("/v1/imports", json={"rows": rows}, headers=as_("dispatcher"))
        too_big = await http.post("/v1/imports", json={"rows": rows * 2}, headers=as_("dispatcher"))
    assert fits.status_code < 300 and 120_000 < nats.sent[0][2] < 130_000
    assert too_big.status_code == 413 and len(nats.sent) == 1
