"""A responder's phone view: its open summons by deadline, one tap to move each on, and a page per summons
for what needs more than a tap (resolve with a photo, return, transfer, ask for an extension)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.gateway.console import labels
from services.gateway.console.i18n import N_
from services.gateway.console.web import BEIJING, Console, Page, Refused, redirect
from services.response.payloads import SummonsPage
from shared import subjects
from shared.commands import ExtensionAsk, ExtensionRequest, SummonsAction
from shared.contracts import NOT_SUMMONABLE, Reply, ResponderKind, SummonsMove

RESPONDER = ("responder",)
OPEN = ("issued", "reported", "on_site")
ID_MAX = 64
# the clock that runs in each state: the one the responder races
RUNNING = {"issued": "report", "reported": "on_site", "on_site": "resolve"}
MOVES = (*SummonsMove, "extension")  # the moves of POST /v1/summons/{id}/{action}, and asking for more time
# the model's own checks across fields, as the field a person should look at
CROSS_FIELD = {
    "missing_reason_code": ("reason_code", labels.FIELD_ERRORS["missing"]),
    "missing_reason": ("reason", labels.FIELD_ERRORS["missing"]),
    "bad_photo_url": ("photo_url", N_("Give a web address starting with http:// or https://.")),
}


def _next_deadline(s: dict) -> str:
    """The deadline of the clock now running (sorts the phone view; none: last)."""
    return (s.get("deadlines") or {}).get(RUNNING.get(s["state"], ""), "") or "9999"


def _local_deadline(value: str | None) -> str | None:
    """A browser's datetime-local (Beijing wall time) as an aware ISO instant; anything else as given."""
    if not value:
        return value
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return value
    return (at.replace(tzinfo=BEIJING) if at.tzinfo is None else at).isoformat()


def add_responder(console: Console) -> None:
    router, bus, names = console.router, console.bus, console.names

    async def my_summons(page: Page) -> tuple[list[dict], list[dict]]:
        """(open summons with their clocks, by deadline; the latest closed ones), asked as the responder.

        Response knows each summons' state at once; the ledger's board adds the clocks a moment later."""
        mine, board = await asyncio.gather(
            bus.ask(subjects.QRY_RESPONSE_SUMMONS, page.actor, SummonsPage(limit=100).model_dump()),
            bus.ask(subjects.QRY_LEDGER_BOARD, page.actor, {"limit": 500}),
        )
        if not mine.ok:
            raise console.refused(page, mine)
        clocks = {r["id"]: r for r in (board.data["items"] if board.ok else [])}
        fresh = {s["id"]: s for s in mine.data["items"]}
        open_, closed = [], []
        for sid in {**clocks, **fresh}:
            row = {**clocks.get(sid, {}), **fresh.get(sid, {})}
            row.setdefault("deadlines", {})
            (open_ if row["state"] in OPEN else closed).append(row)
        open_.sort(key=_next_deadline)
        closed.sort(key=lambda s: s.get("updated_at") or "", reverse=True)
        await asyncio.gather(names.load_categories(page.actor),
                             names.load_responders(page.actor, {s["responder_id"] for s in open_ + closed}))
        return open_, closed[:20]

    def card(s: dict) -> dict:
        now = datetime.now(UTC).isoformat()
        return {**s, "running": RUNNING.get(s["state"]), "overdue": _next_deadline(s) < now}

    @router.get("/summons")
    async def summons_list(request: Request) -> Response:
        page = await console.page(request)
        if page.role != "responder":
            return redirect("/console/board")
        open_, closed = await my_summons(page)
        return console.render(page, "summons.html", items=[card(s) for s in open_], closed=closed,
                              notice=request.query_params.get("notice") == "done")

    async def one(page: Page, summons_id: str) -> dict:
        if not summons_id or len(summons_id) > ID_MAX:
            raise Refused(404, page.gettext("No such summons."))
        open_, closed = await my_summons(page)
        found = next((s for s in open_ + closed if s["id"] == summons_id), None)
        if found is None:
            raise Refused(404, page.gettext("No such summons."))
        return card(found)

    @router.get("/summons/{summons_id}")
    async def summons_page(request: Request, summons_id: str) -> Response:
        page = await console.page(request, RESPONDER)
        return console.render(page, "summons_one.html", s=await one(page, summons_id), errors={}, values={})

    def model_errors(page: Page, exc: ValidationError, given: dict) -> dict[str, str]:
        errors: dict[str, str] = {}
        for e in exc.errors():
            if e["type"] == "missing_target":
                name = "reason" if given.get("to_responder_id") else "to_responder_id"
                errors.setdefault(name, page.gettext(labels.FIELD_ERRORS["missing"]))
            elif e["type"] in CROSS_FIELD:
                name, message = CROSS_FIELD[e["type"]]
                errors.setdefault(name, page.gettext(message))
        return errors | {k: v for k, v in console.field_errors(page, exc).items()
                         if k not in ("form", "summons_id", "action")}

    @router.post("/summons/{summons_id}/{move}")
    async def act(request: Request, summons_id: str, move: str) -> Response:
        """Each move: the API's own model checks the fields, then the same command as /v1."""
        page = await console.page(request, RESPONDER)
        form = await console.form(page)
        if move not in MOVES or not summons_id or len(summons_id) > ID_MAX:
            raise Refused(404, page.gettext("No such action."))
        given = {k: v.strip() for k, v in form.items() if isinstance(v, str) and k != "csrf" and v.strip()}
        errors: dict[str, str] = {}
        reply = None
        try:
            if move == "extension":
                ask = ExtensionAsk.model_validate({k: _local_deadline(v) if k == "new_deadline" else v
                                                   for k, v in given.items()})
                payload = ExtensionRequest(summons_id=summons_id, **ask.model_dump()).model_dump(mode="json")
                subject = subjects.CMD_RESPONSE_EXTENSION
            else:
                fields = {k: v for k, v in given.items()
                          if k in ("note", "reason_code", "reason", "to_responder_id", "photo_url")}
                action = SummonsAction(summons_id=summons_id, action=move, **fields)
                payload, subject = action.model_dump(mode="json"), subjects.CMD_RESPONSE_ACT
        except ValidationError as exc:
            errors = model_errors(page, exc, given) or {"form": page.gettext(labels.INVALID)}
        if not errors and move == SummonsMove.transfer:  # as /v1: the one it goes to must exist first
            target = await bus.ask(subjects.QRY_ROUTING_RESPONDER, page.actor, {"id": payload["to_responder_id"]})
            if not target.ok:
                errors = {"to_responder_id": page.gettext("No such responder.")
                          if target.refusal.status == 404 else console.refusal_errors(page, target)["form"]}
            elif target.data.get("kind") == ResponderKind.command_centre:  # told and may look, never summoned
                errors = console.refusal_errors(
                    page, Reply.refuse(422, "not_summonable", NOT_SUMMONABLE, "to_responder_id"))
        if not errors:
            reply = await bus.command(subject, page.actor, payload)
            if reply.ok:
                return redirect("/console/summons?notice=done")
            if reply.refusal.status in (403, 404) and not reply.refusal.field:
                raise console.refused(page, reply)
            errors = console.refusal_errors(page, reply)
            if "form" in errors:  # an illegal move belongs to the button that asked for it
                errors = {"move": errors["form"]}
        s = await one(page, summons_id)
        return console.render(page, "summons_one.html", 422, s=s,
                              errors={f"{move}.{k}": v for k, v in errors.items()}, values={move: given})
