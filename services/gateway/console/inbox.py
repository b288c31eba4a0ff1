"""The supervisor's inbox: extension requests to decide, twice-returned whistles to arbitrate, dead letters
to replay; each form posts the same command as /v1."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.gateway.console import i18n
from services.gateway.console.pages import NoteForm, _blank_to_none
from services.gateway.console.web import Console, Page, Refused, redirect
from shared import subjects
from shared.commands import Arbitration, ExtensionDecision

SUPERVISOR = ("supervisor",)
ID_MAX = 64
PAGE_ROWS = 50
# each part of the inbox pages on its own: the query parameter of its cursor and the question it asks
PARTS = {
    "extensions": ("ext_cursor", subjects.QRY_LEDGER_INBOX, {}),
    "arbitrations": ("arb_cursor", subjects.QRY_LEDGER_WHISTLES, {"status": "awaiting_arbitration"}),
    "dead_letters": ("dl_cursor", subjects.QRY_LEDGER_DEADLETTERS, {"replayed": False}),
}


def add_inbox(console: Console) -> None:
    router, bus, names = console.router, console.bus, console.names

    async def inbox_page(page: Page, status: int = 200, errors: dict | None = None,
                         values: dict | None = None) -> Response:
        query = page.request.query_params
        errors = dict(errors or {})
        asks = []
        for part, (param, subject, payload) in PARTS.items():
            asked = {**payload, "limit": PAGE_ROWS}
            cursor = query.get(param)
            if cursor:
                asked["cursor"] = cursor[:512]
            asks.append(bus.ask(subject, page.actor, asked))
        replies = dict(zip(PARTS, await asyncio.gather(*asks), strict=True))
        parts: dict[str, list] = {}
        more: dict[str, str | None] = {}
        for part, reply in replies.items():
            if not reply.ok:
                if reply.refusal.status != 422:
                    raise console.refused(page, reply)
                errors[part] = i18n.half(reply.refusal.reason, page.locale)
                status = 422
            parts[part] = reply.data["items"] if reply.ok else []
            cursor = reply.data.get("next_cursor") if reply.ok else None
            more[part] = f"/console/inbox?{urlencode({PARTS[part][0]: cursor})}" if cursor else None
        await asyncio.gather(
            names.load_categories(page.actor),
            names.load_responders(page.actor, {e["responder_id"] for e in parts["extensions"]}),
        )
        # a refusal about an item no longer listed (decided meanwhile) is shown above the lists
        listed = {f"{d}-{e['summons_id']}" for e in parts["extensions"] for d in ("grant", "refuse")}
        listed |= {f"arbitrate-{w['id']}" for w in parts["arbitrations"]}
        listed |= {f"replay-{d['id']}" for d in parts["dead_letters"]}
        stray = {k: v for k, v in errors.items() if "." in k and k.split(".", 1)[0] not in listed}
        return console.render(page, "inbox.html", status, parts=parts, more=more, errors=errors, stray=stray,
                              values=values or {}, notice=query.get("notice") in ("decided", "arbitrated", "replayed"))

    @router.get("/inbox")
    async def inbox(request: Request) -> Response:
        page = await console.page(request, SUPERVISOR)
        return await inbox_page(page)

    def checked(page: Page, value: str) -> str:
        if not value or len(value) > ID_MAX:
            raise Refused(404, page.gettext("No such item."))
        return value

    async def decided(page: Page, reply, key: str, form: dict, notice: str) -> Response:
        """After a command: back to the inbox, or the refusal next to the form that asked (nothing changed)."""
        if reply.ok:
            console.inbox_changed()
            return redirect(f"/console/inbox?notice={notice}")
        if reply.refusal.status in (403,) and not reply.refusal.field:
            raise console.refused(page, reply)
        errors = {f"{key}.{k}": v for k, v in console.refusal_errors(page, reply).items()}
        return await inbox_page(page, 422, errors, {key: form})

    @router.post("/inbox/extensions/{summons_id}/{decision}")
    async def decide(request: Request, summons_id: str, decision: str) -> Response:
        page = await console.page(request, SUPERVISOR)
        form = await console.form(page)
        summons_id = checked(page, summons_id)
        if decision not in ("grant", "refuse"):
            raise Refused(404, page.gettext("No such action."))
        key = f"{decision}-{summons_id}"
        try:
            body = NoteForm.model_validate(_blank_to_none(form))
            payload = ExtensionDecision(summons_id=summons_id, decision=decision, note=body.note)  # as response checks it
        except ValidationError as exc:
            errors = {f"{key}.{k}": v for k, v in console.field_errors(page, exc).items()}
            return await inbox_page(page, 422, errors, {key: form})
        reply = await bus.command(subjects.CMD_RESPONSE_EXTENSION_DECISION, page.actor, payload.model_dump(mode="json"))
        return await decided(page, reply, key, form, "decided")

    @router.post("/inbox/arbitrate/{whistle_id}")
    async def arbitrate(request: Request, whistle_id: str) -> Response:
        page = await console.page(request, SUPERVISOR)
        form = await console.form(page)
        whistle_id = checked(page, whistle_id)
        key = f"arbitrate-{whistle_id}"
        try:
            body = Arbitration.model_validate(_blank_to_none(form))
        except ValidationError as exc:
            errors = {f"{key}.{k}": v for k, v in console.field_errors(page, exc).items()}
            return await inbox_page(page, 422, errors, {key: form})
        reply = await bus.command(subjects.CMD_ROUTING_ARBITRATE, page.actor,
                                  {"whistle_id": whistle_id, **body.model_dump()})
        return await decided(page, reply, key, form, "arbitrated")

    @router.post("/inbox/dead-letters/{dead_letter_id}/replay")
    async def replay(request: Request, dead_letter_id: str) -> Response:
        page = await console.page(request, SUPERVISOR)
        form = await console.form(page)
        dead_letter_id = checked(page, dead_letter_id)
        reply = await bus.command(subjects.CMD_LEDGER_DEADLETTER_REPLAY, page.actor, {"id": dead_letter_id})
        if not reply.ok and reply.refusal.status == 404:
            raise console.refused(page, reply)
        return await decided(page, reply, f"replay-{dead_letter_id}", form, "replayed")
