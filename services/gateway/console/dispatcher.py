"""The dispatcher's pages: blow a whistle, upload a 12345 file in chunks, and the ledger (问题清单)."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.gateway.console import i18n
from services.gateway.console.session import csrf_ok
from services.gateway.console.web import Console, Page, Refused, redirect
from shared import subjects
from shared.commands import RaiseWhistle
from shared.community import BUILDINGS

DISPATCHER = ("dispatcher",)
STAFF = ("dispatcher", "supervisor")
LEDGER_STATUSES = ("open", "dispatched", "resolved", "verified", "closed", "unroutable")
ROWS_MAX = 1000  # the API's own limit per call; the browser also keeps each body under the edge's size cap


class ImportChunk(BaseModel):
    """What the upload page's script sends: the same fields as POST /v1/imports."""

    model_config = ConfigDict(extra="forbid")
    rows: list[dict] = Field(min_length=1, max_length=ROWS_MAX)
    partial: bool = False
    dry_run: bool = False
    first_row: int = Field(default=1, ge=1)


def _whistle_of(form: dict) -> dict:
    """The blow form's flat fields (`location.building`, `reporter.phone`…) as the API's body."""
    def get(k):
        return (form.get(k) or "").strip() if isinstance(form.get(k), str) else ""
    body: dict = {"category": get("category"), "description": get("description"),
                  "location": {"building": get("location.building")}}
    if get("location.unit"):
        body["location"]["unit"] = get("location.unit")
    for name in ("tier", "source"):
        if get(name):
            body[name] = get(name)
    reporter = {k: get(f"reporter.{k}") for k in ("name", "phone") if get(f"reporter.{k}")}
    if form.get("reporter.sms_consent"):
        reporter["sms_consent"] = True
    if form.get("reporter.public_consent"):
        reporter["public_consent"] = True
    if reporter:
        body["reporter"] = reporter
    body["attachments"] = [u.strip() for u in get("attachments").splitlines() if u.strip()]
    return body


def add_dispatcher(console: Console) -> None:
    router, bus, names = console.router, console.bus, console.names

    def blow_page(page: Page, categories: dict, status: int = 200, errors: dict | None = None,
                  values: dict | None = None) -> Response:
        choices = sorted(categories, key=lambda c: names.category(c, page.locale))
        return console.render(page, "blow.html", status, categories=choices,
                              errors={f"blow.{k}": v for k, v in (errors or {}).items()},
                              values={"blow": values or {}}, buildings=sorted(BUILDINGS, key=int))

    @router.get("/blow")
    async def blow_form(request: Request) -> Response:
        page = await console.page(request, DISPATCHER)
        return blow_page(page, await names.load_categories(page.actor))

    @router.post("/blow")
    async def blow(request: Request) -> Response:
        page = await console.page(request, DISPATCHER)
        form = await console.form(page)
        categories = await names.load_categories(page.actor)
        values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}
        try:
            raised = RaiseWhistle.model_validate(_whistle_of(form))
        except ValidationError as exc:
            errors = {("attachments" if k.startswith("attachments") else k): v
                      for k, v in console.field_errors(page, exc).items()}
            return blow_page(page, categories, 422, errors, values)
        reply = await bus.command(subjects.CMD_INTAKE_BLOW, page.actor,
                                  {**raised.model_dump(mode="json"), "idempotency_key": None})
        if not reply.ok:
            if reply.refusal.status in (403,):
                raise console.refused(page, reply)
            return blow_page(page, categories, 422, console.refusal_errors(page, reply), values)
        return redirect(f"/console/whistles/{reply.data['id']}")

    @router.get("/import")
    async def import_page(request: Request) -> Response:
        page = await console.page(request, DISPATCHER)
        return console.render(page, "import.html")

    @router.post("/import/rows")
    async def import_rows(request: Request) -> Response:
        """One chunk from the upload page's script (JSON, CSRF token in a header): the command /v1/imports sends."""
        page = await console.page(request, DISPATCHER)
        if not csrf_ok(page.csrf, request.headers.get("X-CSRF-Token")):
            raise Refused(403, page.gettext("This form has expired or did not come from this console. "
                                            "Reload the page and try again."))
        try:
            chunk = ImportChunk.model_validate(json.loads(await request.body()))
        except (ValueError, ValidationError):
            return JSONResponse({"error": page.gettext("The file could not be read.")}, status_code=422)
        reply = await bus.command(subjects.CMD_INTAKE_IMPORT, page.actor, chunk.model_dump())
        data = reply.data if isinstance(reply.data, dict) else {}
        failed = [{"row": f.get("row"), "field": f.get("field"), "reason": i18n.half(f.get("reason"), page.locale)}
                  for f in data.get("failed") or []]
        if not reply.ok and not failed:
            return JSONResponse({"error": i18n.half(reply.refusal.reason, page.locale)},
                                status_code=reply.refusal.status)
        response = JSONResponse({"imported": data.get("imported", 0), "unchanged": data.get("unchanged", 0),
                                 "failed": failed}, status_code=200 if reply.ok else 422)
        console.finish(page, response)
        return response

    @router.get("/ledger")
    async def ledger(request: Request) -> Response:
        page = await console.page(request, STAFF)
        status = request.query_params.get("status") or None
        errors: dict[str, str] = {}
        if status is not None and status not in LEDGER_STATUSES:
            errors["status"], status = page.gettext("Choose one of the options."), None
        asked: dict = {"status": status, "limit": 50}
        cursor = request.query_params.get("cursor")
        if cursor:
            asked["cursor"] = cursor[:512]
        whistles, classes = await asyncio.gather(
            bus.ask(subjects.QRY_LEDGER_WHISTLES, page.actor, asked),
            bus.ask(subjects.QRY_INTAKE_CLASSES, page.actor, {"limit": 20}),
        )
        if not whistles.ok:
            if whistles.refusal.status != 422:
                raise console.refused(page, whistles)
            errors["cursor"] = i18n.half(whistles.refusal.reason, page.locale)
        items = whistles.data["items"] if whistles.ok else []
        more = whistles.data.get("next_cursor") if whistles.ok else None
        next_url = f"/console/ledger?{urlencode({'status': status or '', 'cursor': more})}" if more else None
        await names.load_categories(page.actor)
        return console.render(page, "ledger.html", 422 if errors else 200, items=items, ledger_status=status or "",
                              errors=errors, next_url=next_url, statuses=LEDGER_STATUSES,
                              classes=classes.data["items"] if classes.ok else [])

