"""What the HTTP channels share: one POST of JSON, its failures turned into answers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from services.notifier.domain import Answer, Verdict, http_verdict

# robots answer 200 with an errcode; these mean "slow down" or "busy", worth another try
ROBOT_RETRY = {-1, 45009, 130101}


def session(concurrency: int, timeout_s: float) -> aiohttp.ClientSession:
    """Keep-alive connections for every HTTP channel (made at start, never at import)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=60),
        timeout=aiohttp.ClientTimeout(total=timeout_s), raise_for_status=False,
    )


async def post(http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> tuple[Answer, Any]:
    """POST; (answer by HTTP status, the parsed JSON body or None). Down, refused, timed out: retry."""
    try:
        async with http.post(url, data=body, headers={"Content-Type": "application/json", **headers},
                             allow_redirects=False) as r:
            text = (await r.read()).decode("utf-8", "replace")
            status = r.status
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return Answer(Verdict.retry, None, f"{type(exc).__name__}: {exc}"[:200]), None
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return Answer(http_verdict(status), status, text[:200]), parsed


def robot_answer(answer: Answer, parsed: Any) -> Answer:
    """WeCom and DingTalk answer 200 and say in `errcode` whether the message went out."""
    if answer.verdict is not Verdict.delivered:
        return answer
    code = parsed.get("errcode") if isinstance(parsed, dict) else None
    if code == 0:
        return answer
    verdict = Verdict.retry if code in ROBOT_RETRY else Verdict.refused
    return Answer(verdict, answer.status, answer.detail)
