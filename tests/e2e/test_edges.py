"""The gateway's edges: lists come in pages (a cursor) that always fit in a NATS message, the body cap counts
bytes as they arrive, every command takes an Idempotency-Key, and nothing a client sends gets a 5xx."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import System, every_page, wait_for

OPEN311 = "/open311/v2"
# what these tests blow: its clocks run an hour in tests/e2e/policies.json, so none fires while the tests after
# these run; and they go to buildings 3–5, 4 and 11, where no other test counts its problem classes
CATEGORY = "ebike_charging"
LONG = "顶楼卧室漏雨，墙皮大片脱落，" * 142 + "漏雨。"  # 2,000 characters, 6,000 bytes of UTF-8: the longest allowed


def _rows(pages: list[httpx.Response]) -> list[dict]:
    return [row for page in pages for row in page.json()]


def _newest_first(rows: list[dict], at: str) -> bool:
    keys = [(r[at], r["id"]) for r in rows]
    return all(a > b for a, b in zip(keys, keys[1:], strict=False))


def _routed(system: System, ids: list[str]) -> list[dict]:
    """Each whistle once its summons is in the ledger."""
    return [system.wait_summons(i) for i in ids]


def test_every_list_pages_by_cursor_and_each_row_comes_once(system: System) -> None:
    run = uuid.uuid4().hex[:8]
    # raised by the community (a public source): Open311 lists them too, where a 12345 call would stay private
    ids = [system.blow(category=CATEGORY, description=f"paging {run} #{i} / 分页", source="community",
                       location={"building": str(i % 3 + 3)}) for i in range(25)]
    everyone_of = {s["id"]: s["responder_id"] for w in _routed(system, ids) for s in w["summons"]}
    summons = set(everyone_of)
    who = max(set(everyone_of.values()), key=list(everyone_of.values()).count)
    theirs = {s for s, r in everyone_of.items() if r == who}
    with system.client(who) as responder:
        first = responder.get("/v1/summons", params={"limit": 7})
        pages = every_page(responder, "/v1/summons", {"limit": 7})
    cursor = first.headers["X-Next-Cursor"]
    assert first.headers["Link"] == f'</v1/summons?limit=7&cursor={cursor}>; rel="next"'
    rows = _rows(pages)
    assert len(theirs) > 7 and all(len(p.json()) == 7 for p in pages[:-1]) and "Link" not in pages[-1].headers
    assert theirs <= {r["id"] for r in rows} and len(rows) == len({r["id"] for r in rows})
    assert _newest_first(rows, "issued_at") and {r["responder_id"] for r in rows} == {who}

    with system.client("dispatcher") as d:
        whistles = _rows(every_page(d, "/v1/whistles", {"limit": 6}))
        classes = _rows(every_page(d, "/v1/classes", {"category": CATEGORY, "limit": 2}))
        responders = every_page(d, "/v1/responders", {"limit": 100})
        everyone = _rows(every_page(d, "/v1/summons", {"limit": 9}))
    assert set(ids) <= {w["id"] for w in whistles} and len(whistles) == len({w["id"] for w in whistles})
    assert _newest_first(whistles, "raised_at")
    assert set(ids) <= {m for c in classes for m in c["member_whistle_ids"]}
    assert len(classes) >= 3 and len(classes) == len({c["id"] for c in classes})
    assert _newest_first(classes, "first_seen")
    listed = [r["id"] for page in responders for r in page.json()["responders"]]
    assert len(listed) == responders[0].json()["total"] > 100 and listed == sorted(set(listed))
    assert summons <= {s["id"] for s in everyone} and len(everyone) == len({s["id"] for s in everyone})

    with httpx.Client(base_url=system.base_url, timeout=15) as anonymous:
        requests = _rows(every_page(anonymous, f"{OPEN311}/requests.json", {"limit": 5}))
    seen = [r["service_request_id"] for r in requests]
    assert set(ids) <= set(seen) and len(seen) == len(set(seen))


def test_a_list_of_the_largest_rows_comes_in_pages_that_fit_in_one_nats_message(system: System) -> None:
    """200 whistles of 2,000 characters are 1.2 MB to list: over NATS's 1 MB max_payload in one reply."""
    headers = {"Authorization": f"Bearer {system.token('dispatcher')}"}
    body = {"category": CATEGORY, "description": LONG, "location": {"building": "11", "address": "十一号楼" * 50},
            "tier": "routine",
            "attachments": [f"https://img.example.org/{'x' * 400}/{i}.jpg" for i in range(5)]}

    async def blow_all() -> list[str]:
        async with httpx.AsyncClient(base_url=system.base_url, headers=headers, timeout=60,
                                     limits=httpx.Limits(max_connections=20)) as c:
            replies = await asyncio.gather(*(c.post("/v1/whistles", json=body) for _ in range(200)))
        assert all(r.status_code == 201 for r in replies), [r.text for r in replies if r.status_code != 201][:3]
        return [r.json()["id"] for r in replies]

    ids = set(asyncio.run(blow_all()))
    with httpx.Client(base_url=system.base_url, timeout=30) as anonymous:
        def listed() -> list[httpx.Response] | None:
            pages = every_page(anonymous, f"{OPEN311}/requests.json", {"limit": 1000, "service_code": CATEGORY})
            return pages if ids <= {r["service_request_id"] for r in _rows(pages)} else None

        pages = wait_for(listed, timeout=60, interval=1, what="200 long whistles in the ledger")
    seen = [r["service_request_id"] for r in _rows(pages)]
    assert len(seen) == len(set(seen)) and len(pages) >= 2
    assert all(r["description"] == LONG for r in _rows(pages) if r["service_request_id"] in ids)


def test_a_chunked_20_mb_body_is_413_before_it_is_read_and_the_gateway_stays_healthy(system: System) -> None:
    sent = 0

    def twenty_mb():
        nonlocal sent
        for _ in range(320):
            sent += 65536
            yield b"a" * 65536

    with httpx.Client(base_url=system.base_url, timeout=30) as c:
        form = c.post(f"{OPEN311}/requests.json", content=twenty_mb(),
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        form_sent, sent = sent, 0
        native = c.post("/v1/whistles", content=twenty_mb(), headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {system.token('dispatcher')}"})
        healthy = c.get("/healthz")
    assert form.status_code == 413 and form.json()["error"]["code"] == "too_large", form.text
    assert native.status_code == 413 and native.json()["error"]["code"] == "too_large", native.text
    assert form_sent < 20 * 2**20 and sent < 20 * 2**20  # the client was stopped before sending it all
    assert healthy.status_code == 200 and system.blow(category=CATEGORY, location={"building": "5"})


@pytest.mark.parametrize("address_id", ["²", "1" * 5000, "٣", "-1", "3.0"])
def test_an_address_id_that_is_not_a_building_number_is_the_specs_400(system: System, address_id: str) -> None:
    with httpx.Client(base_url=system.base_url, timeout=15) as c:
        r = c.post(f"{OPEN311}/requests.json", data={
            "api_key": system.creds["open311_api_key"], "service_code": "noise", "address_id": address_id,
            "description": "西门夜里施工"})
    assert r.status_code == 400, r.text
    assert r.json()[0]["code"] == 400 and "22" in r.json()[0]["description"]


def test_a_command_retried_with_its_idempotency_key_gets_its_first_answer(system: System) -> None:
    """Needs the owner's side (shared/runtime.py): a key that already committed is answered with its first reply."""
    whistle_id = system.blow(category=CATEGORY, location={"building": "5"})
    summons = system.wait_summons(whistle_id)["summons"][0]
    key = str(uuid.uuid4())
    with system.client(summons["responder_id"]) as c:
        first = c.post(f"/v1/summons/{summons['id']}/report", headers={"Idempotency-Key": key})
        again = c.post(f"/v1/summons/{summons['id']}/report", headers={"Idempotency-Key": key})
        without = c.post(f"/v1/summons/{summons['id']}/report")
    assert first.status_code == 200 and first.json()["state"] == "reported", first.text
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert without.status_code == 409
    wait_for(lambda: "summons.reported" in {t["type"] for t in system.whistle(whistle_id)["timeline"]},
             what="the report in the ledger")
    assert [t["type"] for t in system.whistle(whistle_id)["timeline"]].count("summons.reported") == 1


@pytest.mark.parametrize(("who", "method", "path", "body"), [
    ("dispatcher", "POST", "/v1/whistles", {"category": "noise", "description": "x", "location": {"building": "3"}}),
    ("d-property", "POST", "/v1/summons/{summons}/report", None),
    ("dispatcher", "POST", "/v1/whistles/{whistle}/verify", None),
    ("supervisor", "PUT", "/v1/responders/fz-idempotency", {"kind": "department", "name_en": "x", "name_zh": "x",
                                                            "active": False}),
    ("supervisor", "DELETE", "/v1/api-keys/fz-nobody", None),
    (None, "POST", "/r/not-a-real-link", {"solved": True, "satisfaction": "satisfied"}),
])
def test_an_idempotency_key_of_129_characters_is_422_naming_the_header(
    system: System, who: str | None, method: str, path: str, body: dict | None,
) -> None:
    headers = {"Idempotency-Key": "k" * 129}
    if who:
        headers["Authorization"] = f"Bearer {system.token(who)}"
    with httpx.Client(base_url=system.base_url, timeout=15) as c:
        r = c.request(method, path.format(summons=uuid.uuid4(), whistle=uuid.uuid4()), json=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "Idempotency-Key"


@pytest.mark.parametrize("path", ["/v1/summons", "/v1/whistles", "/v1/responders", "/v1/classes"])
def test_a_bad_cursor_or_limit_is_422_naming_it(system: System, path: str) -> None:
    with system.client("supervisor") as s:
        made_up = s.get(path, params={"cursor": "WzEsMiwzXQ"})  # base64 of [1,2,3]: no list sorts by that
        garbage = s.get(path, params={"cursor": "not a cursor!"})
        too_many = s.get(path, params={"limit": 1001})
    assert [r.status_code for r in (made_up, garbage, too_many)] == [422, 422, 422]
    assert [r.json()["error"]["field"] for r in (made_up, garbage, too_many)] == ["cursor", "cursor", "limit"]


def test_open311_refuses_a_bad_cursor_or_limit_with_the_specs_400(system: System) -> None:
    with httpx.Client(base_url=system.base_url, timeout=15) as c:
        for params in ({"cursor": "WyJub3QgYSBrZXkiXQ"}, {"cursor": "%%%"}, {"limit": "1001"}, {"limit": "²"}):
            r = c.get(f"{OPEN311}/requests.json", params=params)
            assert r.status_code == 400 and r.json()[0]["code"] == 400, (params, r.text)


# --- fuzz: nothing a client sends gets a 5xx ------------------------------------------------------------------------

ODD = ["", "²", "٣", "1" * 5000, "\x00", "a\x00b", "-1", "0", "1e9", "9" * 30, "2026-13", "0000-01", "9999-12",
       "0001-01-01", "9999-12-31", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59",
       "2026-11-20T09:00:00+08:00", "mon-fri 25:00-26:00", "sun-mon 09:00-08:00", "../x", "null", "[]", "{}",
       "true", "d-housing", "roof_leak", "7", "22", "23", "🙂", "\ud800", "NaN", "Infinity", "1.5", " ", "\t\n"]
ZONES = st.sampled_from([None, UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))])
WHEN = st.one_of(st.datetimes(timezones=ZONES).map(datetime.isoformat), st.dates().map(date.isoformat),
                 st.dates().map(lambda d: d.isoformat()[:7]))
TEXT = st.one_of(st.sampled_from(ODD), st.text(max_size=30), WHEN)
# what a URL or a form can carry (JSON can carry half a surrogate pair too, escaped)
SAFE_TEXT = TEXT.filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s))
NUMBER = st.sampled_from([0, -1, 1, 2**31, 10**30, -(10**30), 1e308, -1e-308, 0.5])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | NUMBER | st.floats(allow_nan=False) | TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)
PARAMS = {  # the query parameters each path reads
    "/v1/whistles": ["limit", "cursor", "status"], "/v1/summons": ["limit", "cursor"],
    "/v1/classes": ["limit", "cursor", "status", "category", "building"],
    "/v1/responders": ["limit", "cursor", "offset", "kind", "branch", "building"],
    "/v1/rates": ["unit", "month", "from", "to"], "/v1/rates/ranking": ["month", "from", "to"],
    "/open311/": ["limit", "cursor", "status", "start_date", "end_date", "service_code", "service_request_id",
                  "jurisdiction_id"],
}
ODD_VALUE = st.sampled_from([o for o in ODD if "\ud800" not in o])
# the edges of the calendar: a day or 90 either side of them is no time Python or Postgres has
EXTREME = st.sampled_from(["0001-01-01", "9999-12-31", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                           "0000-01", "0001-01", "9999-12", "10000-01-01", "1000", "1001"])
VALUE = st.one_of(SAFE_TEXT, ODD_VALUE, EXTREME, EXTREME, st.integers(-(10**20), 10**20).map(str), WHEN)
# header values HTTP can carry: visible ASCII and Latin-1, no CR, LF or NUL
HEADER = st.binary(max_size=200).map(lambda b: bytes(c for c in b if c >= 0x21 and c != 0x7f))
ORDER = {"order_id": "fz-1", "received_at": "2026-11-20T09:00:00+08:00", "category_text": "屋顶漏雨",
         "address": "星城街道第七社区7号楼", "description": "漏雨", "caller_phone": "13812345678", "deadline_class": "普通"}
# a valid body for each route (the fuzz then breaks a field or two of it), or None for no body
VALID = {
    "/v1/whistles": {"category": CATEGORY, "description": "充电", "tier": "routine", "source": "hotline_12345",
                     "location": {"building": "4", "unit": "2", "address": "4号楼", "lat": 39.7, "long": 116.1},
                     "reporter": {"name": "刘", "phone": "13812345678", "email": "a@b.cn"},
                     "attachments": ["https://img.example.org/a.jpg"]},
    "/v1/imports": {"rows": [ORDER], "dry_run": True, "partial": False, "first_row": 1},
    "verify": {"note": "ok", "photo_url": "https://img.example.org/a.jpg"},
    "arbitrate": {"responder_id": "d-housing", "note": "x"},
    "follow-up": {"solved": True, "satisfaction": "satisfied", "note": "x"},
    # a return or a transfer never goes through (no such reason, no such responder): no one else is summoned
    "action": {"note": "x", "reason_code": "fz-none", "reason": "x", "to_responder_id": "fz-nobody"},
    "extension": {"clock": "resolve", "new_deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(), "reason": "x"},
    "decision": {"note": "x"},
    "responder": {"kind": "member", "name_en": "x", "name_zh": "x", "superior_id": "c-secretary", "branch": "1",
                  "building": "7", "skills": ["roof"], "availability": ["mon-fri 09:00-17:00"], "max_concurrent": 3},
    "api-key": {"client": "fz-client", "note": "x"},
    "resident": {"solved": False, "satisfaction": "dissatisfied", "note": "x"},
    "open311": {"service_code": CATEGORY, "address_id": "4", "address_string": "4号楼", "lat": "39.7",
                "long": "116.1", "description": "漏雨", "email": "a@b.cn", "phone": "13812345678",
                "first_name": "刘", "last_name": "阿姨", "media_url": "https://img.example.org/a.jpg",
                "attribute[floor_type]": "top_floor"},
}
ROUTES = [  # method, path, the body it takes (a VALID key)
    ("GET", "/v1/categories", None), ("GET", "/v1/whistles", None), ("POST", "/v1/whistles", "/v1/whistles"),
    ("POST", "/v1/imports", "/v1/imports"), ("GET", "/v1/whistles/{whistle}", None),
    ("POST", "/v1/whistles/{whistle}/verify", "verify"), ("GET", "/v1/whistles/{whistle}/routing", None),
    ("POST", "/v1/whistles/{whistle}/arbitrate", "arbitrate"), ("POST", "/v1/whistles/{whistle}/follow-up",
                                                                "follow-up"),
    ("GET", "/v1/summons", None), ("POST", "/v1/summons/{summons}/{action}", "action"),
    ("POST", "/v1/summons/{summons}/extension", "extension"),
    ("POST", "/v1/summons/{summons}/extension/{decision}", "decision"), ("GET", "/v1/classes", None),
    ("GET", "/v1/rates", None), ("GET", "/v1/rates/ranking", None), ("GET", "/v1/policies", None),
    ("GET", "/v1/responders", None), ("GET", "/v1/responders/{any}", None),
    ("PUT", "/v1/responders/fz-{any}", "responder"), ("POST", "/v1/api-keys", "api-key"),
    ("DELETE", "/v1/api-keys/fz-{any}", None), ("GET", "/r/{any}", None), ("POST", "/r/{any}", "resident"),
    ("GET", "/open311/v2/{name}", None), ("GET", "/open311/v2/{kind}/{name}", None),
    ("POST", "/open311/v2/{name}", "open311"), ("GET", "/healthz", None),
    # the lists and the Open311 POST again: most of what a client can vary is in their parameters and form
    ("GET", "/open311/v2/requests.json", None), ("GET", "/open311/v2/requests.xml", None),
    ("POST", "/open311/v2/requests.json", "open311"), ("POST", "/open311/v2/requests.json", "open311"),
    ("GET", "/v1/whistles", None), ("GET", "/v1/summons", None), ("GET", "/v1/classes", None),
    ("GET", "/v1/responders", None), ("GET", "/v1/rates", None), ("GET", "/v1/rates/ranking", None),
    ("POST", "/v1/summons/{summons}/extension", "extension"), ("PUT", "/v1/responders/fz-{any}", "responder"),
]


def test_every_parameter_given_each_odd_value_is_answered_below_500(system: System) -> None:
    """The sweep the fuzz below samples from, done whole for the parameters: each value alone."""
    odd = sorted({o for o in ODD if "\ud800" not in o} | set(EXTREME.elements))
    failures = []
    with system.client("supervisor") as c:
        for path, names in PARAMS.items():
            path = "/open311/v2/requests.json" if path == "/open311/" else path
            for name in names:
                for value in odd:
                    try:
                        r = c.get(path, params={name: value})
                    except httpx.TransportError as exc:  # the server dropped the connection: a 5xx too
                        failures.append((path, name, value[:40], repr(exc)))
                        continue
                    if r.status_code >= 500:
                        failures.append((path, name, value[:40], r.status_code, r.text[:200]))
    assert not failures, failures


def prepare_targets(system: System) -> dict[str, list[str]]:
    """Ids the fuzz may act on without touching what other tests count: its own whistles and summons."""
    whistles = [system.blow(category=CATEGORY, description=f"fuzz target {i} / 模糊测试", location={"building": "4"})
                for i in range(3)]
    summons = [w["summons"][0] for w in _routed(system, whistles)]
    return {"whistle": whistles + [str(uuid.uuid4())], "summons": [s["id"] for s in summons] + [str(uuid.uuid4())],
            "responder": [summons[0]["responder_id"]]}


def _broken(draw, value, values):
    """`value` with a field or two (at any depth) replaced, dropped or added; sometimes all of it replaced."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    if isinstance(value, dict):
        out = dict(value)
        for key in draw(st.lists(st.sampled_from(sorted(out)), max_size=2)) if out else ():
            choice = draw(st.integers(0, 3))
            if choice == 0:
                out.pop(key, None)
            elif choice == 1 and isinstance(out.get(key), dict | list):
                out[key] = _broken(draw, out[key], values)
            else:
                out[key] = draw(values)
        if draw(st.integers(0, 7)) == 0:
            out[draw(SAFE_TEXT)] = draw(values)
        return out
    if isinstance(value, list) and value:
        return [_broken(draw, v, values) for v in value] + draw(st.lists(values, max_size=1))
    return value


@st.composite
def requests(draw, targets: dict[str, list[str]]) -> tuple[str | None, str, str, dict, dict, bytes | None]:
    """(who, method, path, params, headers, body): one request a client could send, odd more often than not."""
    def segment(kind: str | None = None) -> str:
        pool = targets.get(kind or "", [])
        return quote(draw(st.sampled_from(pool) if pool and draw(st.booleans()) else SAFE_TEXT), safe="")

    def one_of(*known: str) -> str:
        return draw(st.sampled_from(known)) if draw(st.integers(0, 3)) else segment()

    method, template, takes = draw(st.sampled_from(ROUTES))
    path = template.format(
        whistle=segment("whistle"), summons=segment("summons"), any=segment(),
        action=one_of("report", "arrive", "resolve", "pause", "resume", "return", "transfer"),
        decision=one_of("grant", "refuse"), kind=one_of("services", "requests", "tokens"),
        name=one_of("requests", "services", "discovery", "tokens", "roof_leak") + one_of(".json", ".xml", ""),
    )
    names = next((names for prefix, names in PARAMS.items() if path.startswith(prefix)), ["limit"])
    params = draw(st.dictionaries(st.sampled_from(names), VALUE, max_size=len(names)))
    if draw(st.integers(0, 4)) == 0:
        params[draw(SAFE_TEXT)] = draw(VALUE)
    headers = {"Idempotency-Key": draw(HEADER)} if draw(st.integers(0, 3)) == 0 else {}
    body = None
    if takes == "open311":
        form = _broken(draw, VALID["open311"], SAFE_TEXT)
        form = form if isinstance(form, dict) else {"description": form}
        if draw(st.integers(0, 3)):
            form["api_key"] = targets["api_key"][0]
        body = "&".join(f"{quote(str(k))}={quote(str(v))}" for k, v in form.items()).encode()
        headers["Content-Type"] = one_of("application/x-www-form-urlencoded")
    elif takes is not None:
        value = _broken(draw, VALID[takes], JSON)
        if isinstance(value, dict) and takes == "responder":
            value["active"] = False  # a responder the fuzz makes never takes a real whistle
        if isinstance(value, dict) and takes == "/v1/imports":
            value["dry_run"] = True  # nor does an import add whistles other tests would count
        body = json.dumps(value).encode() if draw(st.integers(0, 9)) else draw(st.binary(max_size=100))
        headers["Content-Type"] = one_of("application/json")
    who = draw(st.sampled_from(["dispatcher", "supervisor", targets["responder"][0], None]))
    return who, method, path, params, headers, body


@pytest.fixture(scope="module")
def targets(system: System) -> dict[str, list[str]]:
    return {**prepare_targets(system), "api_key": [system.creds["open311_api_key"]]}


def test_nothing_a_client_sends_gets_a_5xx(system: System, targets: dict[str, list[str]]) -> None:
    """Checked against schemathesis too; WHISTLE_FUZZ_EXAMPLES=5000 WHISTLE_FUZZ_RANDOM=1 digs deeper."""
    examples = int(os.environ.get("WHISTLE_FUZZ_EXAMPLES", "300"))
    tokens = {who: system.token(who) for who in ("dispatcher", "supervisor", *targets["responder"])}

    @settings(max_examples=examples, deadline=None, database=None, derandomize="WHISTLE_FUZZ_RANDOM" not in os.environ,
              suppress_health_check=list(HealthCheck))
    @given(request=requests(targets))
    def one(client: httpx.Client, request) -> None:
        who, method, path, params, headers, body = request
        if who:
            headers = {**headers, "Authorization": f"Bearer {tokens[who]}"}
        r = client.request(method, path, params=params, headers=headers, content=body)
        assert r.status_code < 500, (who, method, path, params, headers, body, r.status_code, r.text[:500])

    with httpx.Client(base_url=system.base_url, timeout=30) as client:
        one(client)
