"""The SLA board: open summons with a countdown per clock, filters in the URL, live rows, urge and CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from services.gateway.console import labels
from services.gateway.console.hub import Hub
from services.gateway.console.web import Console, Page, Refused, beijing, redirect
from shared import subjects
from shared.community import BUILDINGS
from shared.contracts import Actor

STAFF = ("dispatcher", "supervisor")
KEEPALIVE_S = 15.0
RELOAD_RETRY_S = 1.0  # a stream's own reload the ledger could not answer: asked again after this
CSV_MAX_ROWS = 5000
FILTERS = ("grid", "building", "tier", "category", "unit", "state")
HUB_ACTOR = Actor(role="system", id="console-hub")  # the live board's one query per change, for every stream
OPEN_STATES = ("issued", "reported", "on_site")


def _grids() -> dict[str, list[str]]:
    """The community's grids and their buildings, from the registry data routing seeds itself from."""
    from services.routing.registry import (
        DEFAULT_REGISTRY,  # a data file's path; nothing of routing runs here
    )

    try:
        return {g: list(b) for g, b in (json.loads(Path(DEFAULT_REGISTRY).read_text()).get("grids") or {}).items()}
    except (OSError, ValueError):
        return {}


GRIDS = _grids()


def read_filters(page: Page, params, categories: dict) -> tuple[dict, dict, dict[str, str]]:
    """The filters a query string asks for: (as shown, as the ledger takes them, errors by field)."""
    shown: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in FILTERS:
        value = params.get(name)
        if value:
            shown[name] = value[:64]
    checks = {
        "grid": lambda v: v in GRIDS, "building": lambda v: v in BUILDINGS, "tier": lambda v: v in labels.TIERS,
        "category": lambda v: v in categories or not categories, "state": lambda v: v in labels.BOARD_STATES,
        "unit": lambda v: 0 < len(v) <= 64 and v.replace("-", "").replace("_", "").replace(".", "").isalnum(),
    }
    for name, value in shown.items():
        if not checks[name](value):
            errors[name] = page.gettext("Choose one of the options.")
    asked: dict = {k: shown.get(k) for k in ("tier", "category", "unit", "state") if k not in errors}
    buildings = None
    if shown.get("grid") and "grid" not in errors:
        buildings = GRIDS[shown["grid"]]
    if shown.get("building") and "building" not in errors:
        buildings = [b for b in (buildings or [shown["building"]]) if b == shown["building"]]
    asked["buildings"] = buildings
    cursor = params.get("cursor")
    if cursor:
        asked["cursor"] = cursor[:512]
    return shown, asked, errors


def matches(row: dict, asked: dict, reader: Actor) -> bool:
    """Whether a board row shows on a stream with these filters (as the ledger takes them) to this
    reader: the ledger's board query, applied in the gateway to the rows of the changed whistles."""
    if row.get("state") not in OPEN_STATES or row.get("whistle_status") == "closed":
        return False
    if reader.role == "responder" and row.get("responder_id") != reader.id:  # a responder: its own only
        return False
    if reader.role not in ("dispatcher", "supervisor", "responder"):
        return False
    buildings = asked.get("buildings")
    if buildings is not None and (row.get("location") or {}).get("building") not in buildings:
        return False
    for name, field in (("tier", "tier"), ("category", "category"), ("unit", "responder_id")):
        if asked.get(name) is not None and row.get(field) != asked[name]:
            return False
    state = asked.get("state")
    if state is None:
        return True
    if state == "warned":
        return bool(row.get("warned")) and not row.get("breached")
    if state == "breached":
        return bool(row.get("breached"))
    if state == "paused" and row.get("waiting"):
        return True
    return row.get("state") == state


def clocks(row: dict, now: datetime) -> list[dict]:
    """Each clock's deadline and state for the row's cells (the browser ticks them)."""
    done = {"report": row["state"] in ("reported", "on_site"), "on_site": row["state"] == "on_site", "resolve": False}
    out = []
    for clock in ("report", "on_site", "resolve"):
        deadline = (row.get("deadlines") or {}).get(clock)
        if done[clock]:
            state = "done"
        elif row.get("waiting") or (clock in (row.get("deadlines") or {}) and deadline is None):
            state = "paused"
        elif deadline and datetime.fromisoformat(deadline) <= now:
            state = "breached"
        elif row.get("breached"):
            state = "running"
        elif row.get("warned"):
            state = "warned"
        else:
            state = "running"
        out.append({"clock": clock, "deadline": deadline, "state": state})
    return out


def add_board(console: Console, hub: Hub) -> None:
    router, bus, names = console.router, console.bus, console.names

    async def rows_for(page: Page, asked: dict) -> tuple[list[dict], str | None]:
        reply = await bus.ask(subjects.QRY_LEDGER_BOARD, page.actor, asked)
        if not reply.ok:
            raise console.refused(page, reply)
        items = reply.data["items"]
        await names.load_responders(page.actor, {r["responder_id"] for r in items})
        return items, reply.data.get("next_cursor")

    async def changed_rows(ids: frozenset[str]) -> list[dict]:
        """Every open board row of these whistles, for all streams at once (the hub's one query)."""
        ordered = sorted(ids)
        rows: list[dict] = []
        for start in range(0, len(ordered), 1000):  # the ledger takes up to 1,000 whistles a query
            asked: dict = {"whistle_ids": ordered[start:start + 1000], "limit": 1000}
            while True:
                reply = await bus.ask(subjects.QRY_LEDGER_BOARD, HUB_ACTOR, asked)
                if not reply.ok:
                    raise RuntimeError(f"ledger board: {reply.refusal.code}")
                rows += reply.data["items"]
                if not reply.data.get("next_cursor"):
                    break
                asked["cursor"] = reply.data["next_cursor"]
        await names.load_responders(HUB_ACTOR, {r["responder_id"] for r in rows})
        return rows

    hub.fetch = changed_rows

    def options(page: Page, categories: dict) -> dict[str, list[tuple[str, str]]]:
        """Each filter's choices, labelled in the page's language."""
        _ = page.gettext
        return {
            "grid": [(g, _("Grid %(n)s") % {"n": g.lstrip("g")}) for g in GRIDS], "building": [(b, b) for b in sorted(BUILDINGS, key=int)],
            "tier": [(k, _(v)) for k, v in labels.TIERS.items()],
            "category": [(k, names.category(k, page.locale)) for k in categories],
            "state": [(k, _(v)) for k, v in labels.BOARD_STATES.items()],
        }

    def row_context(page: Page, items: list[dict]) -> dict:
        now = datetime.now(UTC)
        return {"rows": [{**r, "clocks": clocks(r, now)} for r in items]}

    @router.get("/board")
    async def board(request: Request) -> Response:
        page = await console.page(request, STAFF)
        categories = await names.load_categories(page.actor)
        shown, asked, errors = read_filters(page, request.query_params, categories)
        if errors:
            return console.render(page, "board.html", 422, filters=shown, errors=errors, rows=[], next_url=None,
                                  stream_url=None, options=options(page, categories), notice=None)
        try:
            items, cursor = await rows_for(page, asked)
        except Refused as refused:
            if refused.status != 422:
                raise
            return console.render(page, "board.html", 422, filters=shown, errors={"cursor": refused.message},
                                  rows=[], next_url=None, stream_url=None, options=options(page, categories),
                                  notice=None)
        query = urlencode(shown)
        next_url = f"/console/board?{urlencode({**shown, 'cursor': cursor})}" if cursor else None
        return console.render(page, "board.html", filters=shown, errors={}, next_url=next_url,
                              stream_url=f"/console/board/stream?{query}", csv_url=f"/console/board.csv?{query}",
                              options=options(page, categories), notice=request.query_params.get("notice"),
                              **row_context(page, items))

    @router.get("/board.csv")
    async def board_csv(request: Request) -> Response:
        page = await console.page(request, STAFF)
        categories = await names.load_categories(page.actor)
        _, asked, errors = read_filters(page, request.query_params, categories)
        if errors:
            raise Refused(422, page.gettext("Choose one of the options."))
        asked.pop("cursor", None)
        rows: list[dict] = []
        cursor: str | None = None
        while len(rows) < CSV_MAX_ROWS:
            items, cursor = await rows_for(page, {**asked, "limit": 1000, **({"cursor": cursor} if cursor else {})})
            rows += items
            if not cursor:
                break
        _ = page.gettext
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([_("Summons"), _("Whistle"), _("Category"), _("Tier"), _("Building"), _("Unit"), _("Role"),
                         _("State"), _("Report by"), _("On site by"), _("Resolve by"), _("Warned"), _("Breached"),
                         _("Escalations")])
        for r in rows:
            d = r.get("deadlines") or {}
            writer.writerow([
                r["id"], r["whistle_id"], names.category(r["category"], page.locale), _(labels.label(labels.TIERS, r["tier"])),
                (r.get("location") or {}).get("building", ""), names.responder(r["responder_id"], page.locale),
                _(labels.label(labels.ROLES, r["role"])), _(labels.label(labels.SUMMONS_STATES, r["state"])),
                beijing(d.get("report")), beijing(d.get("on_site")), beijing(d.get("resolve")),
                _("Yes") if r["warned"] else _("No"), _("Yes") if r["breached"] else _("No"), r["escalations"],
            ])
        response = Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",  # BOM: Excel reads UTF-8
                            headers={"Content-Disposition": 'attachment; filename="sla-board.csv"'})
        console.finish(page, response)
        return response

    @router.get("/board/stream")
    async def board_stream(request: Request) -> Response:
        """Server-sent events: the rows of each changed whistle that match this board's filters, rendered."""
        page = await console.page(request, STAFF)
        categories = await names.load_categories(page.actor)
        _, asked, errors = read_filters(page, request.query_params, categories)
        if errors:
            raise Refused(422, page.gettext("Choose one of the options."))
        asked.pop("cursor", None)
        template = console.envs[page.locale].get_template("board_rows.html")

        def sse(html: str) -> str:
            return "event: board\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"

        def render(ids: frozenset[str], items: list[dict]) -> bytes:
            """The update of every stream alike (same filters, reader, language): rendered and encoded once
            by the hub, the same bytes written to each of them."""
            return sse(template.render(page=page, csrf=page.csrf, changed=" ".join(sorted(ids)), full=False,
                                       **row_context(page, items))).encode()

        async def whole() -> bytes:
            """This board's first rows, all of them: what the browser's rows are replaced by."""
            items, _ = await rows_for(page, {**asked, "limit": 500})
            return sse(template.render(page=page, csrf=page.csrf, changed="", full=True,
                                       **row_context(page, items))).encode()

        reader = page.actor
        key = (tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in asked.items())),
               reader.role, reader.id if reader.role == "responder" else None, page.locale)

        async def events():
            async with hub.listen(key, lambda r: matches(r, asked, reader), render, whole) as listener:
                yield b"retry: 2000\n\n"
                while True:
                    try:
                        async with asyncio.timeout(KEEPALIVE_S):  # unlike wait_for, no task per update
                            updates = [await listener.queue.get()]
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    while not listener.queue.empty():  # what queued up meanwhile goes out in the same write
                        updates.append(listener.queue.get_nowait())
                    if await request.is_disconnected():
                        return
                    while None in updates:  # fell too far behind: this stream's whole board, its own query
                        while not listener.queue.empty():  # older than the board about to be read
                            listener.queue.get_nowait()
                        try:
                            updates = [await whole()]
                        except Refused:  # the ledger is away a moment: again shortly (the rows owed stay owed)
                            await asyncio.sleep(RELOAD_RETRY_S)
                            if await request.is_disconnected():
                                return
                    yield b"".join(updates)

        response = StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"X-Accel-Buffering": "no"})
        console.finish(page, response)
        return response

    @router.post("/board/urge")
    async def urge(request: Request) -> Response:
        """催办: the notifier reminds each selected summons' responder; or the selection as CSV."""
        page = await console.page(request, STAFF)
        form = await console.form(page)
        selected = form.get("summons") or []
        selected = [selected] if isinstance(selected, str) else selected
        back = form.get("back") if isinstance(form.get("back"), str) and form["back"].startswith("/console/board") \
            else "/console/board"
        if not selected:
            raise Refused(422, page.gettext("Select at least one summons."))
        reply = await bus.command(subjects.CMD_NOTIFIER_URGE, page.actor, {"summons_ids": selected[:1000]})
        if not reply.ok:
            if reply.refusal.code == "service_unavailable":
                raise Refused(503, page.gettext("The notifier is not running: nobody was urged. Try again later."))
            raise console.refused(page, reply)
        sep = "&" if "?" in back else "?"
        return redirect(f"{back}{sep}notice=urged")
