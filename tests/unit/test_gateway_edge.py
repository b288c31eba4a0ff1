"""The HTTP edge: refusals before anything runs, the caller handed on, and a fast path that can step aside."""

from __future__ import annotations

import json

import httpx

from services.gateway.edge import Edge, TokenCache
from services.gateway.limits import TokenBuckets
from shared import auth

SECRET = auth.KeyRing.single("unit-secret-of-at-least-32-bytes-long")  # the bearer token keys
TOKEN = auth.mint(SECRET, "dispatcher", "d1")


class Inner:
    """The app behind the edge: records what reached it and echoes the body and the actor."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, object]] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        actor = scope.get("state", {}).get("actor")
        self.calls.append((scope["path"], body, actor))
        content = json.dumps({"seen": body.decode(), "actor": str(actor)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": content})


def client(inner: Inner, fast=None, rate=(1000.0, 1000.0), max_body=100) -> httpx.AsyncClient:
    edge = Edge(inner, tokens=TokenCache(SECRET), limiter=TokenBuckets(*rate), max_body_bytes=max_body,
                max_import_bytes=1000, fast=fast)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=edge), base_url="http://edge")


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_refusals_come_before_the_app():
    inner = Inner()
    async with client(inner) as c:
        no_token = await c.get("/v1/summons")
        bad_token = await c.get("/v1/summons", headers={"Authorization": f"Bearer {TOKEN}x"})
        form = await c.post("/v1/whistles", content=b"a=b", headers={**AUTH, "Content-Type": "text/plain"})
        too_big = await c.post("/v1/whistles", content=b"x" * 101, headers={**AUTH, "Content-Type": "application/json"})
    assert no_token.status_code == bad_token.status_code == 401
    assert no_token.headers["www-authenticate"] == "Bearer" and no_token.json()["error"]["code"] == "unauthenticated"
    assert form.status_code == 415 and form.json()["error"]["code"] == "unsupported_media_type"
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "too_large"
    assert inner.calls == []


async def test_a_caller_over_its_rate_gets_429_with_retry_after():
    inner = Inner()
    async with client(inner, rate=(1.0, 2.0)) as c:
        statuses = [(await c.get("/v1/categories", headers=AUTH)) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].headers["retry-after"] == "1" and statuses[2].json()["error"]["code"] == "rate_limited"


async def test_the_app_gets_the_caller():
    inner = Inner()
    async with client(inner) as c:
        r = await c.get("/v1/categories", headers=AUTH)
    assert r.json()["actor"] == "dispatcher:d1"


async def test_a_fast_path_answers_with_the_body_and_the_caller():
    inner, seen = Inner(), []

    async def fast(scope, body, actor):
        seen.append((body, str(actor)))
        return 201, b'{"id": "w1"}'

    async with client(inner, fast={("POST", "/v1/whistles"): fast}) as c:
        r = await c.post("/v1/whistles", json={"a": 1}, headers=AUTH)
    assert r.status_code == 201 and r.json() == {"id": "w1"} and r.headers["content-type"] == "application/json"
    assert seen == [(b'{"a":1}', "dispatcher:d1")] and inner.calls == []


async def test_a_fast_path_that_steps_aside_leaves_the_request_to_the_app_unchanged():
    inner = Inner()

    async def fast(scope, body, actor):
        return None

    async with client(inner, fast={("POST", "/v1/whistles"): fast}) as c:
        r = await c.post("/v1/whistles", json={"a": 1}, headers=AUTH)
        other = await c.post("/v1/imports", json={"b": 2}, headers=AUTH)  # no fast path: straight through
    assert r.status_code == 200 and r.json()["seen"] == '{"a":1}'
    assert [(path, body) for path, body, _ in inner.calls] == [("/v1/whistles", b'{"a":1}'), ("/v1/imports", b'{"b":2}')]
    assert other.json()["actor"] == "dispatcher:d1"


async def test_a_streamed_body_over_the_limit_is_413_on_a_fast_path():
    inner = Inner()

    async def fast(scope, body, actor):
        raise AssertionError("never asked")

    async def chunks():
        for _ in range(3):
            yield b"x" * 60

    async with client(inner, fast={("POST", "/v1/whistles"): fast}) as c:
        r = await c.post("/v1/whistles", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and inner.calls == []


def test_tokens_are_verified_once_and_the_cache_stays_bounded():
    cache = TokenCache(SECRET, max_size=3)
    first = cache.actor(TOKEN)
    assert first is not None and str(first) == "dispatcher:d1" and cache.actor(TOKEN) is first
    assert cache.actor("nope") is None and cache.actor(TOKEN + "x") is None
    for i in range(10):
        cache.actor(f"junk-{i}")
    assert len(cache._known) <= 3
    assert cache.actor(TOKEN) == first


def counted(n: int, size: int, pulled: list[int]):
    """A chunked body of n chunks, noting how many the server pulled."""
    async def chunks():
        for _ in range(n):
            pulled[0] += 1
            yield b"x" * size
    return chunks()


async def test_a_chunked_body_over_the_cap_is_413_as_soon_as_it_passes_it_for_every_route():
    inner = Inner()
    for path, headers in (("/v1/whistles/w1/verify", {**AUTH, "Content-Type": "application/json"}),
                          ("/open311/v2/requests.json", {"Content-Type": "application/x-www-form-urlencoded"}),
                          ("/v1/imports", {**AUTH, "Content-Type": "application/json"})):
        pulled = [0]
        async with client(inner) as c:
            r = await c.post(path, content=counted(1000, 60, pulled), headers=headers)
        cap = 1000 if path == "/v1/imports" else 100
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large", path
        assert r.headers["connection"] == "close" and str(cap) in r.json()["error"]["reason"]
        assert pulled[0] == cap // 60 + 1  # not one chunk more than it took to pass the cap
    assert inner.calls == []


async def test_a_chunked_body_under_the_cap_reaches_the_app_whole():
    inner, pulled = Inner(), [0]
    async with client(inner) as c:
        r = await c.post("/open311/v2/requests.json", content=counted(3, 30, pulled),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and inner.calls[0][1] == b"x" * 90


async def test_a_content_length_that_is_not_ascii_digits_is_not_a_500():
    """'²' is a digit to isdigit() but not to int(); 5,000 digits are too many for int()."""
    for length in ("²", "1" * 5000):
        inner, sent = Inner(), []
        scope = {"type": "http", "method": "POST", "path": "/open311/v2/requests.json", "headers": [
            (b"content-length", length.encode()), (b"content-type", b"application/x-www-form-urlencoded")],
            "client": ("127.0.0.1", 1), "query_string": b""}
        messages = [{"type": "http.request", "body": b"a=b", "more_body": False}]

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        edge = Edge(inner, tokens=TokenCache(SECRET), limiter=TokenBuckets(1000.0, 1000.0), max_body_bytes=100,
                    max_import_bytes=1000)
        await edge(scope, receive, send)
        assert sent[0]["status"] in (200, 413), length
