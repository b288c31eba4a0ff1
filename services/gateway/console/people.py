"""The people page (人员账号, supervisors): the console accounts, and a form to set or reset a password.

The form names an account by user name; its role and whom it acts as are read back from routing, so a
reset can change nothing but the password (a registry responder without an account gets one). The
fields are checked with `cmd.routing.password_set`'s own model, and a refusal is shown next to its field.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.gateway.console import i18n, labels
from services.gateway.console.web import Console, Page, redirect
from shared import subjects
from shared.commands import PasswordSet

SUPERVISOR = ("supervisor",)
ROLES = ("dispatcher", "supervisor", "responder")
PAGE_SIZE = 50


def password_errors(page: Page, exc: ValidationError) -> dict[str, str]:
    """PasswordSet's errors by form field (the user name or the password), in the chosen language."""
    errors: dict[str, str] = {}
    for e in exc.errors():
        field = "password" if e["loc"][:1] == ("password",) else "username"
        least = (e.get("ctx") or {}).get("min_length", 1)
        if e["type"] == "string_too_short" and least > 1:
            message = page.gettext("At least %(n)s characters.") % {"n": least}
        else:
            message = page.gettext(labels.FIELD_ERRORS.get(e["type"], labels.INVALID))
        errors.setdefault(field, message)
    return errors


def add_people(console: Console) -> None:
    router, bus = console.router, console.bus

    async def listing(page: Page, errors: dict[str, str]) -> dict:
        """The accounts as the filters ask (a bad filter or cursor is shown by its field)."""
        query = page.request.query_params
        q = (query.get("q") or "").strip()[:64] or None
        role = query.get("role") or None
        if role is not None and role not in ROLES:
            errors["role"], role = page.gettext("Choose one of the options."), None
        asked: dict = {"q": q, "role": role, "limit": PAGE_SIZE}
        if cursor := query.get("cursor"):
            asked["cursor"] = cursor[:512]
        reply = await bus.ask(subjects.QRY_ROUTING_ACCOUNTS, page.actor, asked)
        if not reply.ok:
            if reply.refusal.status != 422:
                raise console.refused(page, reply)
            errors["cursor"] = i18n.half(reply.refusal.reason, page.locale)
        more = reply.data.get("next_cursor") if reply.ok else None
        next_url = f"/console/people?{urlencode({'q': q or '', 'role': role or '', 'cursor': more})}" if more else None
        return {"accounts": reply.data["items"] if reply.ok else [], "next_url": next_url, "q": q or "",
                "role": role or "", "roles": ROLES}

    @router.get("/people")
    async def people(request: Request) -> Response:
        page = await console.page(request, SUPERVISOR)
        errors: dict[str, str] = {}
        shown = await listing(page, errors)
        chosen = (request.query_params.get("username") or "")[:64]
        notice = request.query_params.get("notice") == "password_set"
        return console.render(page, "people.html", 422 if errors else 200, errors=errors, chosen=chosen,
                              notice=notice, **shown)

    @router.post("/people/password")
    async def set_password(request: Request) -> Response:
        """Set or reset one account's password; a refused form changes nothing."""
        page = await console.page(request, SUPERVISOR)
        form = await console.form(page)
        username = form.get("username") if isinstance(form.get("username"), str) else ""
        password = form.get("password") if isinstance(form.get("password"), str) else ""
        errors: dict[str, str] = {}
        account = None
        if username.strip():
            found = await bus.ask(subjects.QRY_ROUTING_ACCOUNTS, page.actor,
                                  {"username": username.strip()[:64], "limit": 1})
            if not found.ok:
                raise console.refused(page, found)
            account = next(iter(found.data["items"]), None)
        # no account yet: a responder of the registry gets one, acting as itself (routing refuses any other name)
        named = ({"username": account["username"], "role": account["role"], "id": account["id"]} if account
                 else {"username": username.strip(), "role": "responder"})
        payload = {"accounts": [named], "password": password}
        try:
            PasswordSet.model_validate(payload)  # the same rules as cmd.routing.password_set
        except ValidationError as exc:
            errors = password_errors(page, exc)
        if not errors:
            reply = await bus.command(subjects.CMD_ROUTING_PASSWORD_SET, page.actor, payload)
            if reply.ok:
                done = urlencode({"notice": "password_set", "username": named["username"]})
                return redirect(f"/console/people?{done}")
            if reply.refusal.status == 403:
                raise console.refused(page, reply)
            field = reply.refusal.field or "form"
            if field.startswith("accounts"):
                errors = {"username": page.gettext("No account or responder has this user name.")}
            else:
                errors = {"password" if field == "password" else "form": i18n.half(reply.refusal.reason, page.locale)}
        shown = await listing(page, {})
        return console.render(page, "people.html", 422, errors=errors, chosen=username[:64], notice=False, **shown)
