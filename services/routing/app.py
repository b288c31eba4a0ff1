"""Routing's composition root."""

from __future__ import annotations

from pathlib import Path

from services.routing.accounts import AccountHandlers
from services.routing.domain import load_rules
from services.routing.handlers import RoutingHandlers
from services.routing.payloads import (
    AccountFilter,
    ArbitrateWhistle,
    Known,
    PlaceAsk,
    ResponderFilter,
    ResponderPut,
    ResponderRef,
    SignIn,
    SigninLinkUse,
    TokenRevoke,
    WhistleRef,
)
from services.routing.places import PlaceHandlers, load_site
from services.routing.registry import load_registry
from services.routing.responders import RegistryHandlers, seed_registry
from services.routing.settings import RoutingSettings
from services.routing.signin_links import SigninLinks
from services.routing.tokens import TokenHandlers, TokenNotices
from shared import subjects
from shared.commands import PasswordSet, SigninLinkAsk
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
from shared.runtime import Consumer, EventRoutes, Request, ServiceRuntime


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
    accounts = AccountHandlers(handlers)
    runtime.signs = True  # asks the notifier to send sign-in links, as the system: signed
    links = SigninLinks(runtime)  # queries too: a request counts against the name, and spending is one UPDATE
    staff, supervisors = frozenset({"dispatcher", "supervisor"}), frozenset({"supervisor"})
    services = frozenset({"system"})  # the console, the runner and the notifier ask as system callers
    runtime.serve(
        Request(subjects.QRY_ROUTING_RESPONDERS, editing.list, payload=ResponderFilter, roles=staff, query=True),
        # a responder reads its own record only (the handler checks which)
        Request(subjects.QRY_ROUTING_RESPONDER_ONE, editing.get, payload=ResponderRef, roles=staff | {"responder"},
                query=True),
        Request(subjects.CMD_ROUTING_RESPONDER_PUT, editing.put, payload=ResponderPut, roles=supervisors),
        Request(subjects.CMD_ROUTING_PASSWORD_SET, accounts.set_password, payload=PasswordSet,
                roles=supervisors | services),
        # a query (own transaction): a refused sign-in must still count against the name
        Request(subjects.CMD_ROUTING_SIGNIN_CHECK, accounts.check, payload=SignIn, roles=services, query=True),
        Request(subjects.QRY_ROUTING_ACCOUNTS, accounts.list, payload=AccountFilter, roles=supervisors | services,
                query=True),
        Request(subjects.QRY_ROUTING_KNOWN, accounts.known, payload=Known, roles=supervisors | services, query=True),
        Request(subjects.CMD_ROUTING_SIGNIN_LINK, links.request, payload=SigninLinkAsk, roles=services, query=True),
        Request(subjects.CMD_ROUTING_SIGNIN_LINK_USE, links.use, payload=SigninLinkUse, roles=services, query=True),
        Request(subjects.CMD_ROUTING_ARBITRATE, handlers.arbitrate, payload=ArbitrateWhistle, roles=supervisors),
        Request(subjects.QRY_ROUTING_EXPLAIN, handlers.explain, payload=WhistleRef, roles=staff, query=True),
        # names and kinds only: a responder checks a transfer's target, the console names who holds what
        Request(subjects.QRY_ROUTING_RESPONDER, handlers.responder, payload=ResponderRef,
                roles=staff | {"responder", "system"}, query=True),
        # the map: any caller the gateway let through (Open311 places a bare point as a system reader)
        Request(subjects.QRY_ROUTING_BUILDINGS, places.buildings, query=True),
        Request(subjects.QRY_ROUTING_GRIDS, places.grids, query=True),
        Request(subjects.QRY_ROUTING_PLACE, places.place, payload=PlaceAsk, query=True),
    )
    # revoked bearer tokens: routing owns the list, the gateways keep it (services/routing/tokens.py)
    tokens, notices = TokenHandlers(), TokenNotices()
    runtime.serve(
        Request(subjects.CMD_ROUTING_TOKEN_REVOKE, tokens.revoke, payload=TokenRevoke,
                roles=staff | {"responder"}),  # supervisors any token; anyone else its own (the handler checks)
        Request(subjects.CMD_ROUTING_RESPONDER_TOKENS_REVOKE, tokens.revoke_responder, payload=ResponderRef,
                roles=supervisors),
        Request(subjects.QRY_ROUTING_TOKEN_REVOCATIONS, tokens.revocations, roles=services, query=True),
    )
    runtime.every(1.0, notices.keep_listening)  # each committed change is published to every gateway at once
    runtime.every(3600.0, tokens.forget_expired)
    events = (EventRoutes().batch(WhistleBlown.SUBJECT, handlers.on_whistles_blown)
              .each(SummonsResolved.SUBJECT, handlers.on_summons_resolved)
              .each(SummonsReturned.SUBJECT, handlers.on_summons_returned)
              .each(SummonsTransferred.SUBJECT, handlers.on_summons_transferred)
              .each(WhistleReopened.SUBJECT, handlers.on_whistle_reopened))
    runtime.consume(Consumer(events.subjects, events, batch=True, durable="routing-events"))
    runtime.every(settings.rules_check_s, handlers.reload_rules)
    runtime.every(1.0, handlers.refresh_registry)  # an edit through another replica shows here within a second
    runtime.documents(SummonsIssued, WhistleRouted, WhistleUnroutable, WhistleArbitrationNeeded, WhistleArbitrated)
    return runtime
