"""Response's composition root."""

from __future__ import annotations

import functools
from pathlib import Path

from services.response import handlers
from services.response.payloads import FollowUpAnswer, FollowUpLink, SummonsPage, WhistleFollowUpLink
from services.response.settings import ResponseSettings
from shared import subjects
from shared.commands import ExtensionDecision, ExtensionRequest, SummonsAction, VerifyWhistle
from shared.contracts import (
    ExtensionGranted,
    ExtensionRefused,
    ExtensionRequested,
    SummonsIssued,
    SummonsOnSite,
    SummonsPaused,
    SummonsReported,
    SummonsResolved,
    SummonsResumed,
    SummonsReturned,
    SummonsTransferred,
    WhistleClosed,
    WhistleFollowedUp,
    WhistleReopened,
    WhistleVerified,
)
from shared.runtime import Consumer, Request, ServiceRuntime

RESPONDER = frozenset({"responder"})
DISPATCHER = frozenset({"dispatcher"})
SUPERVISOR = frozenset({"supervisor"})
# who sees summons: a responder its own, dispatchers and supervisors everyone's
STAFF = frozenset({"responder", "dispatcher", "supervisor"})


def _with_secret(handler, secret: str):
    """The handler with the link key bound (its docstring kept: it documents the subject)."""
    return functools.update_wrapper(functools.partial(handler, link_secret=secret), handler)


def _bind(handler, **settings):
    """The handler with settings bound by keyword (its docstring kept: it documents the subject)."""
    return functools.update_wrapper(functools.partial(handler, **settings), handler)


def build(settings: ResponseSettings | None = None) -> ServiceRuntime:
    settings = settings or ResponseSettings()
    runtime = ServiceRuntime("response", settings, Path(__file__).with_name("migrations"))
    # no inbox: opening a summons is idempotent by itself (ON CONFLICT DO NOTHING on its id), and an
    # inbox row per summons would only add Postgres work
    runtime.consume(Consumer(SummonsIssued.SUBJECT, handlers.on_summons_issued, batch=True, dedup=lambda _: None))
    secret = settings.link_secret.get_secret_value()
    ttl = {"link_ttl_s": settings.follow_up_link_ttl_s}
    # the summons' own responder, the pending extension, the link's life: checked by the handlers
    runtime.serve(
        Request(subjects.CMD_RESPONSE_ACT, handlers.act, payload=SummonsAction, roles=RESPONDER),
        Request(subjects.CMD_RESPONSE_EXTENSION, handlers.request_extension, payload=ExtensionRequest,
                roles=RESPONDER),
        Request(subjects.CMD_RESPONSE_EXTENSION_DECISION, handlers.decide_extension, payload=ExtensionDecision,
                roles=SUPERVISOR),
        Request(subjects.CMD_RESPONSE_VERIFY, _with_secret(handlers.verify, secret), payload=VerifyWhistle,
                roles=DISPATCHER),
        # a dispatcher from a phone call, or the resident through its one-time link
        Request(subjects.CMD_RESPONSE_FOLLOW_UP, _bind(handlers.follow_up, **ttl), payload=FollowUpAnswer,
                roles=frozenset({"dispatcher", "resident"})),
        Request(subjects.QRY_RESPONSE_FOLLOW_UP_LINK, _bind(handlers.follow_up_link, **ttl), payload=FollowUpLink,
                roles=frozenset({"resident"}), query=True),
        Request(subjects.QRY_RESPONSE_FOLLOW_UP_TOKEN, _bind(handlers.follow_up_token, link_secret=secret, **ttl),
                payload=WhistleFollowUpLink, roles=frozenset({"system"}), query=True),
        Request(subjects.QRY_RESPONSE_SUMMONS, handlers.list_summons, payload=SummonsPage, roles=STAFF, query=True),
    )
    runtime.every(15.0, handlers.count_summons)
    runtime.documents(
        SummonsReported, SummonsOnSite, SummonsResolved, SummonsPaused, SummonsResumed,
        ExtensionRequested, ExtensionGranted, ExtensionRefused, SummonsReturned, SummonsTransferred,
        WhistleVerified, WhistleClosed, WhistleFollowedUp, WhistleReopened,
    )
    return runtime
