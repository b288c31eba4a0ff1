"""What every console page shares: the signed-in session, the language, rendering, forms and refusals.

A page is a route on `Console.router` that starts with `page = await console.page(request)` (which
sends whoever is not signed in to sign-in and back), asks the services with `page.actor` exactly as
/v1 does, and ends with `console.render(page, "template.html", ...)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.gateway.console import i18n, labels
from services.gateway.console.i18n import N_
from services.gateway.console.session import (
    LANG_COOKIE,
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    Session,
    Signer,
    csrf_ok,
)
from shared import subjects
from shared.contracts import Actor, Reply

log = structlog.get_logger("gateway.console")
BEIJING = ZoneInfo("Asia/Shanghai")
NAMES_TTL_S = 600.0  # categories and responder names change rarely; a registry edit shows within minutes
INBOX_TTL_S = 3.0  # the badge's count is shared by a gateway's supervisors: fresher costs a query per page


class Redirect(Exception):
    """Raised inside a page to answer with a redirect (sign-in first)."""

    def __init__(self, to: str):
        self.to = to

# why signing in gives no working session: the sign-in page and the sign-in link's page say so
DEACTIVATED = N_("Your unit has been deactivated: you can no longer sign in. Ask your supervisor if this is a"
                  " mistake.")
SESSION_ENDED = N_("Your session has ended: your access was revoked or your unit was deactivated. Sign in"
                    " again, or ask your supervisor.")


@dataclass
class Page:
    """One request's context: who, in which language, with which CSRF token, and its translations."""

    request: Request
    session: Session | None
    locale: str
    gettext: Any
    csrf: str
    notices: list[str] = field(default_factory=list)
    set_presession: str | None = None
    inbox: int | None = None  # what waits in a supervisor's inbox (the badge on every page)
    ended: bool = False  # it came with a session that no longer works (revoked, or the responder deactivated)

    @property
    def actor(self) -> Actor:
        assert self.session is not None
        return self.session.actor

    @property
    def role(self) -> str | None:
        return self.session.role if self.session else None


def beijing(value: str | None) -> str:
    """An ISO instant as Beijing time, to the second (what people in the community read)."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(value)


class Names:
    """Category and responder names in both languages, cached (a board row must not cost a request)."""

    def __init__(self, bus):
        self.bus = bus
        self.categories: dict[str, tuple[str, str]] = {}
        self._categories_at = 0.0
        self.responders: dict[str, tuple[str, str, float]] = {}

    async def load_categories(self, actor: Actor) -> dict[str, tuple[str, str]]:
        if time.monotonic() - self._categories_at > NAMES_TTL_S or not self.categories:
            reply = await self.bus.ask(subjects.QRY_INTAKE_CATEGORIES, actor)
            if reply.ok:
                items = reply.data.get("categories", reply.data) if isinstance(reply.data, dict) else reply.data
                self.categories = {c["code"]: (c.get("name_en") or c["code"], c.get("name_zh") or c["code"])
                                   for c in items or []}
                self._categories_at = time.monotonic()
        return self.categories

    async def load_responders(self, actor: Actor, ids: set[str]) -> None:
        now = time.monotonic()
        for rid in ids:
            known = self.responders.get(rid)
            if known and now - known[2] < NAMES_TTL_S:
                continue
            reply = await self.bus.ask(subjects.QRY_ROUTING_RESPONDER, actor, {"id": rid})
            if reply.ok:
                self.responders[rid] = (reply.data.get("name_en") or rid, reply.data.get("name_zh") or rid, now)

    def category(self, code: str | None, locale: str) -> str:
        en_zh = self.categories.get(code or "")
        return (en_zh[1] if locale == "zh-CN" else en_zh[0]) if en_zh else (code or "")

    def responder(self, rid: str | None, locale: str) -> str:
        known = self.responders.get(rid or "")
        return (known[1] if locale == "zh-CN" else known[0]) if known else (rid or "")


class Console:
    """The console's shared machinery; pages are added to `router` (see pages.py, board.py)."""

    def __init__(self, bus, secret: str, *, session_ttl_s: int, secure_cookies: bool, revocations=None):
        self.bus = bus
        self.signer = Signer(secret, session_ttl_s)
        self.revocations = revocations  # the gateway's revoked tokens (services/gateway/revocations.py), if any
        self.secure = secure_cookies
        self.names = Names(bus)
        self.translations = {loc: i18n.load(loc) for loc in i18n.LOCALES}
        self.envs = i18n.environments({
            "labels": labels, "label": labels.label, "beijing": beijing, "names": self.names,
        })
        self.router = APIRouter(prefix="/console", include_in_schema=False)
        self._inbox: tuple[float, dict[str, int]] | None = None

    async def inbox_counts(self, actor: Actor) -> dict[str, int] | None:
        """What waits in the supervisors' inbox, by part; cached a few seconds (None: the ledger did not answer)."""
        if self._inbox and time.monotonic() - self._inbox[0] < INBOX_TTL_S:
            return self._inbox[1]
        reply = await self.bus.ask(subjects.QRY_LEDGER_INBOX, actor, {"counts": True})
        if not reply.ok:
            return None
        self._inbox = (time.monotonic(), reply.data)
        return reply.data

    def inbox_changed(self) -> None:
        """A decision taken here: the next page counts again."""
        self._inbox = None

    # --- the request's context ---------------------------------------------------------------------

    def context(self, request: Request) -> Page:
        """Session (if any) and language of a request; pages that need sign-in use `page`."""
        locale = i18n.pick(request.cookies.get(LANG_COOKIE))
        session = self.signer.load(request.cookies.get(SESSION_COOKIE))
        ended = session is not None and self.revocations is not None and self.revocations.session_revoked(
            session.actor, session.expires - self.signer.ttl_s)  # deactivated, or revoked since it began
        translations = self.translations[locale]
        page = Page(request, None if ended else session, locale, translations.gettext, "", ended=ended)
        if session is not None:
            page.csrf = session.csrf
        else:
            self.presession(page, request)
        return page

    def presession(self, page: Page, request: Request) -> None:
        """A sign-in form's CSRF token: the pre-session cookie's, or a new one set with the page (double
        submit: cookie and field must match)."""
        token = self.signer.presession_token(request.cookies.get(PRESESSION_COOKIE))
        if token is None:
            cookie = self.signer.presession()
            page.set_presession, token = cookie, cookie.partition(".")[0]
        page.csrf = token

    async def page(self, request: Request, roles: tuple[str, ...] | None = None) -> Page:
        """The context of a page that needs someone signed in (else: to sign-in, then back here)."""
        page = self.context(request)
        if page.session is None:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise Redirect(f"/console/signin?next={quote(here, safe='')}" + ("&ended=1" if page.ended else ""))
        if roles is not None and page.role not in roles:
            raise Refused(403, page.gettext("This page is not for your role."))
        if page.role == "supervisor":
            counts = await self.inbox_counts(page.actor)
            page.inbox = sum(counts.values()) if counts else None
        return page

    async def form(self, page: Page) -> dict[str, Any]:
        """The posted form, once its CSRF token checks out (a form without one changes nothing)."""
        try:
            form = await page.request.form()
        except Exception:  # noqa: BLE001 — the multipart parser's errors vary: any unreadable body is a refusal
            raise Refused(400, page.gettext("The form could not be read. Reload the page and try again.")) from None
        if not csrf_ok(page.csrf, form.get("csrf")):
            raise Refused(403, page.gettext("This form has expired or did not come from this console. "
                                            "Reload the page and try again."))
        data: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                data.setdefault(key, []).append(value)
        return {k: v if len(v) > 1 else v[0] for k, v in data.items()}

    # --- answers -----------------------------------------------------------------------------------

    def render(self, page: Page, template: str, status: int = 200, headers: dict | None = None,
               **context: Any) -> HTMLResponse:
        env = self.envs[page.locale]
        here = page.request.url.path + (f"?{page.request.url.query}" if page.request.url.query else "")
        html = env.get_template(template).render(
            page=page, session=page.session, csrf=page.csrf, here=here, here_q=quote(here, safe=""), **context)
        response = HTMLResponse(html, status_code=status, headers=headers)
        self.finish(page, response)
        return response

    def finish(self, page: Page, response: Response) -> None:
        """Cookies and headers every console answer carries."""
        if page.set_presession:
            response.set_cookie(PRESESSION_COOKIE, page.set_presession, httponly=True, samesite="strict",
                                secure=self.secure, path="/console/")
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'")

    def refused(self, page: Page, reply: Reply) -> Refused:
        """A service's refusal as a page error in the chosen language."""
        r = reply.refusal
        return Refused(r.status if r else 503, i18n.half(r.reason if r else "", page.locale))

    def field_errors(self, page: Page, exc) -> dict[str, str]:
        """A pydantic ValidationError as one message per field, in the chosen language."""
        errors: dict[str, str] = {}
        for e in exc.errors():
            name = ".".join(str(p) for p in e["loc"]) or "form"
            errors.setdefault(name, page.gettext(labels.FIELD_ERRORS.get(e["type"], labels.INVALID)))
        return errors

    def refusal_errors(self, page: Page, reply: Reply) -> dict[str, str]:
        """A service's refusal next to the field it names (or the form as a whole)."""
        r = reply.refusal
        return {(r.field if r and r.field else "form"): i18n.half(r.reason if r else "", page.locale)}


class Refused(Exception):
    """Raised inside a page: answer with this status and message on the error page."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


def redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303)


CONSOLE_DIR = Path(__file__).parent
