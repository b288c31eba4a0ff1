"""The runtime's own refusals, the same for every request of every service."""

from __future__ import annotations

import json
from typing import Any

from shared.contracts import Reply

EXPIRED = Reply.refuse(504, "expired", "the request came after the gateway stopped waiting; nothing was done"
                       " / 请求超时，未执行")
TOO_LARGE = Reply.refuse(413, "too_large", "the answer is too large for one message: ask for less, or send less"
                        " / 结果过大：请缩小请求范围或减少内容")
IDEMPOTENCY_CONFLICT = Reply.refuse(409, "idempotency_conflict", "this Idempotency-Key was used for another request"
                                    " / 该幂等键已用于另一请求", "Idempotency-Key")


def unavailable(service: str) -> Reply:
    """A request not carried out for a fault of the service's (the database away, a bug): nothing was done."""
    return Reply.refuse(503, "unavailable", f"{service} could not complete the request; retry / 暂时无法处理，请重试")


def decoded(data: bytes) -> Any | Reply:
    """A request's body as JSON, or the refusal of one that is not."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Reply.refuse(422, "bad_command", f"not JSON: {exc}")
