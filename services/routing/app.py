"""Routing's composition root."""

from __future__ import annotations

from pathlib import Path

from services.routing.accounts import AccountHandlers
from services.routing.domain import load_rules
from services.routing.handlers import RoutingHandlers
from services.routing.places import PlaceHandlers, load_site
from services.routing.registry import load_registry
from services.routing.responders import RegistryHandlers, seed_registry
from services.routing.settings import RoutingSettings
from services.routing.signin_links import SigninLinks
from shared import subjects
from shared.community import BUILDINGS
from shared.contracts import (
    SummonsIssued,
    SummonsResolved,
    SummonsReturned,
    SummonsTransferred,
    WhistleArbitrated,
    WhistleArbitrationNeeded,
    WhistleBlown,
    WhistleReopened,
    WhistleRouted,
    WhistleUnroutable,
)
from shared.runtime import ServiceRuntime


def build(settings: RoutingSettings | None = None) -> ServiceRuntime:
    settings = settings or RoutingSettings()
    runtime = ServiceRuntime("routing", settings, Path(__file__).with_name("migrations"))
    registry = load_registry(settings.registry_file)  # checked at start; Postgres holds the live one
    handlers = RoutingHandlers(registry, load_rules(registry, settings.rules_file), settings.rules_file)
    editing = RegistryHandlers(handlers, BUILDINGS)
    places = PlaceHandlers(load_site(settings.registry_file), settings.place_within_m)  # checked at start too

    async def start(rt: ServiceRuntime) -> None:
        await seed_registry(rt.pool, settings.registry_file)
        await handlers.refresh_registry(rt)

    runtime.on_startup(start)
    runtime.on_request(subjects.QRY_ROUTING_RESPONDERS, editing.list, query=True)
    runtime.on_request(subjects.QRY_ROUTING_RESPONDER_ONE, editing.get, query=True)
    runtime.on_request(subjects.CMD_ROUTING_RESPONDER_PUT, editing.put)
    accounts = AccountHandlers(handlers)
    runtime.on_request(subjects.CMD_ROUTING_PASSWORD_SET, accounts.set_password)
    # a query (own transaction): a refused sign-in must still count against the name
    runtime.on_request(subjects.CMD_ROUTING_SIGNIN_CHECK, accounts.check, query=True)
    runtime.on_request(subjects.QRY_ROUTING_ACCOUNTS, accounts.list, query=True)
    runtime.on_request(subjects.QRY_ROUTING_KNOWN, accounts.known, query=True)
    links = SigninLinks(runtime)  # queries too: a request counts against the name, and spending is one UPDATE
    runtime.on_request(subjects.CMD_ROUTING_SIGNIN_LINK, links.request, query=True)
    runtime.on_request(subjects.CMD_ROUTING_SIGNIN_LINK_USE, links.use, query=True)
    runtime.on_events(WhistleBlown.SUBJECT, handlers.on_whistles_blown, batch=True)
    runtime.on_events(SummonsResolved.SUBJECT, handlers.on_summons_resolved)
    runtime.on_events(SummonsReturned.SUBJECT, handlers.on_summons_returned)
    runtime.on_events(SummonsTransferred.SUBJECT, handlers.on_summons_transferred)
    runtime.on_events(WhistleReopened.SUBJECT, handlers.on_whistle_reopened)
    runtime.on_request(subjects.CMD_ROUTING_ARBITRATE, handlers.arbitrate)
    runtime.on_request(subjects.QRY_ROUTING_EXPLAIN, handlers.explain, query=True)
    runtime.on_request(subjects.QRY_ROUTING_RESPONDER, handlers.responder, query=True)
    runtime.on_request(subjects.QRY_ROUTING_BUILDINGS, places.buildings, query=True)
    runtime.on_request(subjects.QRY_ROUTING_GRIDS, places.grids, query=True)
    runtime.on_request(subjects.QRY_ROUTING_PLACE, places.place, query=True)
    runtime.every(settings.rules_check_s, handlers.reload_rules)
    runtime.every(1.0, handlers.refresh_registry)  # an edit through another replica shows here within a second
    runtime.documents(SummonsIssued, WhistleRouted, WhistleUnroutable, WhistleArbitrationNeeded, WhistleArbitrated)
    return runtime
