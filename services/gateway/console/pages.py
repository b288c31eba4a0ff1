"""Sign-in, language, home, a whistle's page with its actions, and a responder's own summons."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.gateway.console import i18n
from services.gateway.console.session import (
    LANG_COOKIE,
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    safe_next,
)
from services.gateway.console.web import DEACTIVATED, SESSION_ENDED, Console, Refused, redirect
from services.response.payloads import FollowUpAnswer
from shared import subjects
from shared.commands import Arbitration, ExtensionDecision, FollowUp, VerifyWhistle
from shared.contracts import Actor

CONSOLE_ACTOR = Actor(role="system", id="console")  # who asks routing to check a sign-in
ID_MAX = 64


class VerifyForm(BaseModel):
    """The same fields and limits as POST /v1/whistles/{id}/verify."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    note: str | None = Field(default=None, max_length=1000)
    photo_url: str | None = Field(default=None, max_length=500)


class NoteForm(BaseModel):
    """The same note as POST /v1/summons/{id}/extension/grant|refuse."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    note: str | None = Field(default=None, max_length=1000)


def _blank_to_none(form: dict) -> dict:
    return {k: (v if v != "" else None) for k, v in form.items() if k != "csrf"}


def _pending_extensions(timeline: list[dict]) -> dict[str, dict]:
    """Extension requests not yet decided, by summons id (the latest request of each)."""
    pending: dict[str, dict] = {}
    for item in timeline:
        data = item.get("data") or {}
        sid = str(data.get("summons_id") or "")
        if item["type"] == "summons.extension_requested":
            pending[sid] = data
        elif item["type"] in ("summons.extension_granted", "summons.extension_refused"):
            pending.pop(sid, None)
    return pending


def add_pages(console: Console) -> None:
    router, bus = console.router, console.bus

    @router.get("/")
    async def home(request: Request) -> Response:
        page = await console.page(request)
        return redirect("/console/summons" if page.role == "responder" else "/console/board")

    @router.get("/signin")
    async def signin_form(request: Request) -> Response:
        page = console.context(request)
        # sent here because the session stopped working (revoked, or the responder deactivated): say so
        errors = {"form": page.gettext(SESSION_ENDED)} if request.query_params.get("ended") == "1" else {}
        return console.render(page, "signin.html", next=safe_next(request.query_params.get("next")), errors=errors)

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        page = console.context(request)
        page.session = None  # signing in again replaces whoever was signed in; the pre-session token guards it
        token = console.signer.presession_token(request.cookies.get(PRESESSION_COOKIE))
        page.csrf = token or page.csrf
        form = await console.form(page) if token else None
        if form is None:
            raise Refused(403, page.gettext("This form has expired or did not come from this console. "
                                            "Reload the page and try again."))
        target = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
        username = form.get("username") if isinstance(form.get("username"), str) else ""
        password = form.get("password") if isinstance(form.get("password"), str) else ""
        errors = {}
        if not username.strip():
            errors["username"] = page.gettext("This field is required.")
        if not password:
            errors["password"] = page.gettext("This field is required.")
        if errors:
            return console.render(page, "signin.html", 422, next=target, errors=errors, username=username)
        reply = await bus.ask(subjects.CMD_ROUTING_SIGNIN_CHECK, CONSOLE_ACTOR,
                              {"username": username[:ID_MAX], "password": password[:128]})
        if not reply.ok:
            status = reply.refusal.status
            if status == 429:
                wait = (reply.data or {}).get("retry_after_s", 1)
                message = page.gettext("Too many wrong passwords. Try again in %(s)s seconds.") % {"s": wait}
                return console.render(page, "signin.html", 429, {"Retry-After": str(wait)}, next=target,
                                      errors={"form": message}, username=username)
            if status == 401:
                message = page.gettext("Wrong user name or password.")
                return console.render(page, "signin.html", 401, next=target, errors={"form": message},
                                      username=username)
            if status == 403 and reply.refusal.code == "deactivated":
                return console.render(page, "signin.html", 403, next=target, errors={"form": page.gettext(DEACTIVATED)},
                                      username=username)
            raise console.refused(page, reply)
        cookie, _ = console.signer.issue(Actor(role=reply.data["role"], id=reply.data["id"]))
        response = redirect(target)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=console.signer.ttl_s, httponly=True, samesite="strict",
                            secure=console.secure, path="/console/")
        response.delete_cookie(PRESESSION_COOKIE, path="/console/")
        return response

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        page = await console.page(request)
        await console.form(page)
        response = redirect("/console/signin")
        response.delete_cookie(SESSION_COOKIE, path="/console/")
        return response

    @router.get("/lang")
    async def switch_language(request: Request) -> Response:
        """A link on every page: the language cookie, then back where you were (a GET: it changes nothing else)."""
        to = request.query_params.get("to")
        response = redirect(safe_next(request.query_params.get("next")))
        if to in i18n.LOCALES:
            response.set_cookie(LANG_COOKIE, to, max_age=365 * 86400, samesite="strict", secure=console.secure,
                                path="/console/")
        return response

    async def whistle_view(page, whistle_id: str) -> dict:
        """Everything the whistle's page shows, each part asked as the signed-in person."""
        if not whistle_id or len(whistle_id) > ID_MAX:
            raise Refused(404, page.gettext("No such whistle."))
        reply = await bus.ask(subjects.QRY_LEDGER_WHISTLE, page.actor, {"id": whistle_id})
        if not reply.ok:
            raise console.refused(page, reply)
        whistle = reply.data
        staff = page.role in ("dispatcher", "supervisor")
        routing = notifications = problem_class = None
        if staff:
            location = whistle.get("location") or {}
            explained, sent, classes = await asyncio.gather(
                bus.ask(subjects.QRY_ROUTING_EXPLAIN, page.actor, {"id": whistle_id}),
                bus.ask(subjects.QRY_NOTIFIER_NOTIFICATIONS, page.actor, {"whistle_id": whistle_id, "limit": 100}),
                bus.ask(subjects.QRY_INTAKE_CLASSES, page.actor,
                        {"category": whistle.get("category"), "building": location.get("building"), "limit": 20}),
            )
            routing = explained.data if explained.ok else None
            notifications = sent.data["items"] if sent.ok else None  # the notifier may not run: the page still does
            if classes.ok:
                problem_class = next((c for c in classes.data["items"] if whistle_id in
                                      (c.get("member_whistle_ids") or [])), None)
        await asyncio.gather(
            console.names.load_categories(page.actor),
            console.names.load_responders(page.actor, {s["responder_id"] for s in whistle["summons"]}),
        )
        return {"whistle": whistle, "routing": routing, "notifications": notifications,
                "problem_class": problem_class, "pending": _pending_extensions(whistle["timeline"]),
                "now": datetime.now(UTC).isoformat()}

    @router.get("/whistles/{whistle_id}")
    async def whistle_page(request: Request, whistle_id: str) -> Response:
        page = await console.page(request)
        return console.render(page, "whistle.html", errors={}, values={}, **await whistle_view(page, whistle_id))

    # each action: the form's fields checked with the API's own model, then the same command as /v1;
    # a refusal is shown next to its field and nothing changes
    ACTIONS = {
        "verify": (("dispatcher",), VerifyForm, subjects.CMD_RESPONSE_VERIFY),
        "follow-up": (("dispatcher",), FollowUp, subjects.CMD_RESPONSE_FOLLOW_UP),
        "arbitrate": (("supervisor",), Arbitration, subjects.CMD_ROUTING_ARBITRATE),
        "grant": (("supervisor",), NoteForm, subjects.CMD_RESPONSE_EXTENSION_DECISION),
        "refuse": (("supervisor",), NoteForm, subjects.CMD_RESPONSE_EXTENSION_DECISION),
    }
    RESPONSE_PAYLOADS = {"verify": VerifyWhistle, "follow-up": FollowUpAnswer}

    @router.post("/whistles/{whistle_id}/{action}")
    async def whistle_action(request: Request, whistle_id: str, action: str) -> Response:
        page = await console.page(request)
        form = await console.form(page)
        if action not in ACTIONS:
            raise Refused(404, page.gettext("No such action."))
        roles, model, subject = ACTIONS[action]
        if page.role not in roles:
            raise Refused(403, page.gettext("Your role may not do this."))
        fields = _blank_to_none(form)
        summons_id = fields.pop("summons_id", None) if action in ("grant", "refuse") else None
        if action == "follow-up" and fields.get("solved") is None:
            fields.pop("solved", None)  # missing, so the model names it
        errors: dict[str, str] = {}
        try:
            body = model.model_validate(fields)
            # response's payloads as response checks them
            if action in ("grant", "refuse"):
                payload = ExtensionDecision(summons_id=summons_id or "", decision=action,
                                            note=body.note).model_dump(mode="json")
            elif action in RESPONSE_PAYLOADS:
                payload = RESPONSE_PAYLOADS[action](whistle_id=whistle_id, **body.model_dump()).model_dump(mode="json")
            else:
                payload = {"whistle_id": whistle_id, **body.model_dump()}
        except ValidationError as exc:
            errors = console.field_errors(page, exc)
        if not errors:
            reply = await bus.command(subject, page.actor, payload)
            if reply.ok:
                return redirect(f"/console/whistles/{whistle_id}")
            if reply.refusal.status in (403, 404) and not reply.refusal.field:
                raise console.refused(page, reply)
            errors = console.refusal_errors(page, reply)
        view = await whistle_view(page, whistle_id)
        return console.render(page, "whistle.html", 422, errors={f"{action}.{k}": v for k, v in errors.items()},
                              values={action: form}, **view)
