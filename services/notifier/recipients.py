"""Whom a contact rule may name: someone routing knows (a registry responder, or whom a console account
acts as), or one of the desks the notifier itself tells. Routing owns the people, so it is asked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.notifier.domain import COMMUNITY_DESK, STREET_COMMAND
from shared import subjects
from shared.contracts import Actor, Reply

Ask = Callable[[str, dict], Awaitable[Reply | None]]  # a query to another service; None: it did not answer
SYSTEM = Actor(role="system", id="notifier")


def asking(runtime) -> Ask:
    """Queries over the runtime's NATS connection, as the notifier."""

    async def ask(subject: str, payload: dict) -> Reply | None:
        body = runtime.signed(subject, SYSTEM, payload)  # owners verify it (shared/signing.py)
        try:
            msg = await runtime.nc.request(subject, body, timeout=5.0)
            return Reply.model_validate_json(msg.data)
        except Exception:  # noqa: BLE001 — away, slow or garbled: the caller answers 503 and changes nothing
            return None

    return ask


async def unknown(ask: Ask | None, recipient: str) -> Reply | None:
    """None when the id names someone (or `ask` is not given); else the 404, or a 503 when routing does
    not answer."""
    if recipient in (COMMUNITY_DESK, STREET_COMMAND) or ask is None:
        return None
    found = await ask(subjects.QRY_ROUTING_KNOWN, {"id": recipient})
    if found is None or not found.ok:
        return Reply.refuse(503, "routing_unavailable", "routing did not answer whether this id exists; try again"
                            " / 路由服务未应答，请稍后再试")
    if not (found.data["responder"] or found.data["account"]):
        return Reply.refuse(404, "no_such_responder", "no responder or account has this id / 无此响应单位或账号", "id")
    return None
