"""Sign-in by a one-time link (发送登录链接): ask for one on the sign-in page, open it, confirm.

Opening the link only shows a confirm button: link previews and mail scanners fetch URLs, and a GET
that spent the link would sign no one in. The POST (with the pre-session CSRF token) spends it once
and signs in as the password does. The request's answer is the same whether or not the name exists.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from services.gateway.console.i18n import N_
from services.gateway.console.session import PRESESSION_COOKIE, SESSION_COOKIE, safe_next
from services.gateway.console.web import DEACTIVATED, Console, Page, Refused, redirect
from shared import subjects
from shared.contracts import Actor

CONSOLE_ACTOR = Actor(role="system", id="console")
TOKEN_MAX = 128
NO_REFERRER = {"Referrer-Policy": "no-referrer"}  # the token is in the URL: it goes nowhere else
STALE_FORM = N_("This form has expired or did not come from this console. Reload the page and try again.")
REFUSALS = {
    410: N_("This sign-in link has been used or has expired. Ask for a new one on the sign-in page."),
    400: N_("This is not a sign-in link. Ask for a new one on the sign-in page."),
    403: DEACTIVATED,  # the link's account acts for a deactivated responder
}


def anonymous(console: Console, request: Request) -> Page:
    """A sign-in form's context: nobody signed in, and the pre-session token as its CSRF token."""
    page = console.context(request)
    page.session = None
    console.presession(page, request)
    return page


async def checked_form(console: Console, page: Page) -> dict:
    """The posted form, once its pre-session token checks out (no cookie: the form is stale)."""
    if page.set_presession is not None:  # the cookie was missing or forged: nothing to match
        raise Refused(403, page.gettext(STALE_FORM))
    return await console.form(page)


def home_of(role: str) -> str:
    return "/console/summons" if role == "responder" else "/console/board"


def add_signin_links(console: Console) -> None:
    router, bus = console.router, console.bus

    @router.post("/signin/link")
    async def ask_for_link(request: Request) -> Response:
        """Send me a sign-in link: the same answer whether or not the name exists."""
        page = anonymous(console, request)
        form = await checked_form(console, page)
        target = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
        username = (form.get("username") if isinstance(form.get("username"), str) else "").strip()
        errors: dict[str, str] = {}
        if not username:
            errors["link-username"] = page.gettext("This field is required.")
        elif len(username) > 64:
            errors["link-username"] = page.gettext("This is too long.")
        if errors:
            return console.render(page, "signin.html", 422, next=target, errors=errors, link_username=username[:64])
        reply = await bus.ask(subjects.CMD_ROUTING_SIGNIN_LINK, CONSOLE_ACTOR, {"username": username})
        if reply.ok:
            return console.render(page, "signin.html", next=target, errors={}, link_sent=True)
        if reply.refusal.status == 429:
            wait = (reply.data or {}).get("retry_after_s", 1)
            message = page.gettext("Too many sign-in links asked for. Try again in %(s)s seconds.") % {"s": wait}
            return console.render(page, "signin.html", 429, {"Retry-After": str(wait)}, next=target,
                                  errors={"link": message}, link_username=username)
        raise console.refused(page, reply)

    @router.get("/signin/link/{token}")
    async def confirm_link(request: Request, token: str) -> Response:
        """The link's page: a button that signs in (opening the link spends nothing)."""
        page = anonymous(console, request)
        return console.render(page, "signin_link.html", headers=NO_REFERRER, token=token[:TOKEN_MAX + 1])

    @router.post("/signin/link/{token}")
    async def use_link(request: Request, token: str) -> Response:
        """Spend the link once and sign in as its account; used, expired or unknown: a refusal, no session."""
        page = anonymous(console, request)
        await checked_form(console, page)
        # cut to what routing takes: a longer token is no link of ours, and its first 128 characters are none either
        reply = await bus.ask(subjects.CMD_ROUTING_SIGNIN_LINK_USE, CONSOLE_ACTOR, {"token": token[:TOKEN_MAX]})
        if not reply.ok:
            status = reply.refusal.status
            if status not in REFUSALS:
                raise console.refused(page, reply)
            other = "en" if page.locale == "zh-CN" else "zh-CN"
            return console.render(page, "signin_link_refused.html", status, NO_REFERRER,
                                  message=page.gettext(REFUSALS[status]),
                                  other=console.translations[other].gettext(REFUSALS[status]), other_locale=other)
        # as the password sign-in does: a fresh session (and CSRF token), the pre-session cookie gone
        cookie, _ = console.signer.issue(Actor(role=reply.data["role"], id=reply.data["id"]))
        response = redirect(home_of(reply.data["role"]))
        response.set_cookie(SESSION_COOKIE, cookie, max_age=console.signer.ttl_s, httponly=True, samesite="strict",
                            secure=console.secure, path="/console/")
        response.delete_cookie(PRESESSION_COOKIE, path="/console/")
        return response
