"""The console under /console/: server-rendered pages for dispatchers, responders and supervisors."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from services.gateway.console.board import add_board
from services.gateway.console.dispatcher import add_dispatcher
from services.gateway.console.hub import Hub
from services.gateway.console.inbox import add_inbox
from services.gateway.console.map import add_map
from services.gateway.console.pages import add_pages
from services.gateway.console.people import add_people
from services.gateway.console.rates import add_rates
from services.gateway.console.responder import add_responder
from services.gateway.console.signin_links import add_signin_links
from services.gateway.console.web import (
    CONSOLE_DIR,
    Console,
    Redirect,
    Refused,
    redirect,
)


def mount(app: FastAPI, bus, secret: str, *, session_ttl_s: int = 8 * 3600, secure_cookies: bool = False,
          revocations=None) -> Console:
    """Add the console's pages, its static files and its error pages to the gateway's app; a session of a
    responder deactivated, or whose tokens were revoked after it began, is no session (`revocations`)."""
    console = Console(bus, secret, session_ttl_s=session_ttl_s, secure_cookies=secure_cookies,
                      revocations=revocations)
    hub = Hub(bus)
    add_pages(console)
    add_board(console, hub)
    add_responder(console)
    add_dispatcher(console)
    add_inbox(console)
    add_rates(console)
    add_map(console)
    add_people(console)
    add_signin_links(console)
    app.include_router(console.router)
    app.mount("/console/static", StaticFiles(directory=CONSOLE_DIR / "static"), name="console-static")

    @app.exception_handler(Redirect)
    async def to_signin(_: Request, exc: Redirect) -> Response:
        return redirect(exc.to)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        page = console.context(request)
        return console.render(page, "error.html", exc.status, message=exc.message)

    app.state.console = console
    return console
