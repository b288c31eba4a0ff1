"""Native intake: Idempotency-Key, the reporter's phone masked in every read, attachments, strict
content types, rate limits, Chinese text byte for byte, and no input that produces a 5xx."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import System, wait_for

BODY = {"category": "bicycle_shed", "description": "车棚顶塌了一角 / the shed roof caved in at one corner",
        "location": {"building": "16", "unit": "2", "address": "16号楼北侧"}, "tier": "routine",
        "source": "hotline_12345", "reporter": {"name": "刘阿姨", "phone": "138 1234 5678"},
        "attachments": ["https://img.example.org/shed.jpg"]}


def test_the_same_idempotency_key_and_body_give_the_same_whistle_another_body_a_409(system: System) -> None:
    key = str(uuid.uuid4())
    with system.client("dispatcher") as d:
        first = d.post("/v1/whistles", json=BODY, headers={"Idempotency-Key": key})
        again = d.post("/v1/whistles", json=BODY, headers={"Idempotency-Key": key})
        other = d.post("/v1/whistles", json={**BODY, "description": "another"}, headers={"Idempotency-Key": key})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    wait_for(lambda: system.whistle(first.json()["id"]).get("summons"), what="routed once")
    blown = [t for t in system.whistle(first.json()["id"])["timeline"] if t["type"] == "whistle.blown"]
    assert len(blown) == 1


def test_the_phone_is_masked_in_every_read_and_chinese_round_trips(system: System) -> None:
    with system.client("dispatcher") as d:
        whistle_id = d.post("/v1/whistles", json=BODY).json()["id"]
    whistle = wait_for(lambda: (w := system.whistle(whistle_id)) and w.get("summons") and w)
    raw = httpx.get(f"{system.base_url}/v1/whistles/{whistle_id}",
                    headers={"Authorization": f"Bearer {system.token('dispatcher')}"}).content.decode("utf-8")
    assert "1234" not in raw.replace("****", "") or "12345678" not in raw  # never the whole number
    assert "13812345678" not in raw and "138 1234 5678" not in raw
    assert whistle["reporter"] == {"name": "刘阿姨", "phone": "138****5678", "email": None, "sms_consent": False,
                                   "public_consent": False}
    assert whistle["description"] == BODY["description"] and whistle["location"]["address"] == "16号楼北侧"
    assert whistle["location"]["unit"] == "2" and whistle["attachments"] == BODY["attachments"]
    blown = next(t for t in whistle["timeline"] if t["type"] == "whistle.blown")
    assert blown["data"]["reporter"]["phone"] == "138****5678"


def test_bad_attachments_and_phones_are_422_with_the_field(system: System) -> None:
    with system.client("dispatcher") as d:
        for body, field in (({**BODY, "attachments": ["javascript:alert(1)"]}, "attachments"),
                            ({**BODY, "attachments": ["https://a.org/x.jpg"] * 6}, "attachments"),
                            ({**BODY, "reporter": {"phone": "call me"}}, "reporter.phone"),
                            ({**BODY, "location": {"building": "16", "unit": "x" * 17}}, "location.unit")):
            r = d.post("/v1/whistles", json=body)
            assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_only_json_is_accepted(system: System) -> None:
    headers = {"Authorization": f"Bearer {system.token('dispatcher')}"}
    r = httpx.post(f"{system.base_url}/v1/whistles", content=b"category=noise", headers={
        **headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = httpx.post(f"{system.base_url}/v1/whistles", content=b"{}", headers={**headers, "Content-Type": "text/plain"})
    assert r.status_code == 415


def test_a_caller_over_its_rate_gets_429_with_retry_after(system: System) -> None:
    headers = {"Authorization": f"Bearer {system.token('m-b03-secretary')}"}

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=system.base_url, headers=headers, timeout=30,
                                     limits=httpx.Limits(max_connections=100)) as c:
            return await asyncio.gather(*(c.get("/v1/categories") for _ in range(60)))

    responses = asyncio.run(flood())
    limited = [r for r in responses if r.status_code == 429]
    assert limited, "60 requests at once exceed this caller's burst of 10 at 5/s"
    assert all(r.status_code in (200, 429) for r in responses)
    assert int(limited[0].headers["Retry-After"]) >= 1 and limited[0].json()["error"]["code"] == "rate_limited"
    with system.client("dispatcher") as d:  # other callers are not affected
        assert d.get("/v1/categories").status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=12,
)
bodies = st.fixed_dictionaries({}, optional={
    "category": st.sampled_from(["roof_leak", "noise", "", "nope"]) | st.text(max_size=70),
    "description": st.text(max_size=50) | st.just("x" * 2001),
    "location": st.fixed_dictionaries({}, optional={"building": st.text(max_size=20) | st.sampled_from(["7", "23"]),
                                                    "grid": json_values, "unit": json_values}) | json_values,
    "tier": st.sampled_from(["routine", "urgent", "complex", "URGENT"]) | json_values,
    "source": st.sampled_from(["online", "grid_patrol", "x"]) | json_values,
    "reporter": json_values, "attachments": json_values, "extra": json_values,
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies | json_values)
def test_no_input_produces_a_5xx(system: System, body) -> None:
    with system.client("supervisor") as c:
        r = c.post("/v1/whistles", json=body)
    assert r.status_code < 500, (body, r.text)
    assert r.status_code in (201, 422), (body, r.text)


def test_200_concurrent_blows_share_batches_and_each_key_makes_one_whistle(system: System) -> None:
    """Group commit: concurrent requests are answered one by one as if alone (keys included)."""
    run = uuid.uuid4().hex[:8]
    body = {**BODY, "description": f"concurrent {run}"}
    replayed_keys = [f"{run}-same-{i}" for i in range(10)]  # 5 requests each, one body
    contested = f"{run}-contested"  # 3 requests with one body, 2 with another
    other = {**body, "description": f"concurrent {run} (another body)"}
    plan: list[tuple[dict, str | None]] = [(body, None)] * 150
    plan += [(body, key) for key in replayed_keys for _ in range(5)]
    plan += [(body, contested)] * 3 + [(other, contested)] * 2
    headers = {"Authorization": f"Bearer {system.token('dispatcher')}"}

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=system.base_url, headers=headers, timeout=60,
                                     limits=httpx.Limits(max_connections=200)) as c:
            return await asyncio.gather(*(
                c.post("/v1/whistles", json=b, headers={"Idempotency-Key": k} if k else {}) for b, k in plan))

    responses = asyncio.run(send_all())
    assert len(plan) == 205 and all(r.status_code in (200, 201, 409) for r in responses), \
        {r.status_code: r.text for r in responses}
    created = [r.json()["id"] for r in responses if r.status_code == 201]
    assert len(created) == len(set(created)) == 150 + len(replayed_keys) + 1
    by_key: dict[str, list[httpx.Response]] = {}
    for (_, key), r in zip(plan, responses, strict=True):
        if key:
            by_key.setdefault(key, []).append(r)
    for key in replayed_keys:
        statuses = sorted(r.status_code for r in by_key[key])
        assert statuses == [200, 200, 200, 200, 201], (key, statuses)
        assert len({r.json()["id"] for r in by_key[key]}) == 1
        assert all(r.json().get("replayed") is True for r in by_key[key] if r.status_code == 200)
    winner = next(r for r in by_key[contested] if r.status_code == 201)
    winning_body = plan[responses.index(winner)][0]
    for (b, key), r in zip(plan, responses, strict=True):
        if key == contested and r is not winner:
            expected = 200 if b == winning_body else 409
            assert r.status_code == expected, (b["description"], r.text)
            if expected == 200:
                assert r.json()["id"] == winner.json()["id"]
            else:
                assert r.json()["error"]["code"] == "idempotency_conflict"
    for whistle_id in [winner.json()["id"], *(by_key[k][0].json()["id"] for k in replayed_keys)]:
        timeline = wait_for(lambda w=whistle_id: system.whistle(w).get("timeline"), what=f"whistle {whistle_id}")
        assert [t["type"] for t in timeline].count("whistle.blown") == 1
