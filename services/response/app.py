"""Response's composition root."""

from __future__ import annotations

import functools
from pathlib import Path

from services.response import handlers
from services.response.settings import ResponseSettings
from shared import subjects
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
from shared.runtime import ServiceRuntime


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
    runtime.on_events(SummonsIssued.SUBJECT, handlers.on_summons_issued, batch=True, dedup=lambda _: None)
    runtime.on_request(subjects.CMD_RESPONSE_ACT, handlers.act)
    runtime.on_request(subjects.CMD_RESPONSE_EXTENSION, handlers.request_extension)
    runtime.on_request(subjects.CMD_RESPONSE_EXTENSION_DECISION, handlers.decide_extension)
    secret = settings.link_secret.get_secret_value()
    runtime.on_request(subjects.CMD_RESPONSE_VERIFY, _with_secret(handlers.verify, secret))
    ttl = {"link_ttl_s": settings.follow_up_link_ttl_s}
    runtime.on_request(subjects.CMD_RESPONSE_FOLLOW_UP, _bind(handlers.follow_up, **ttl))
    runtime.on_request(subjects.QRY_RESPONSE_FOLLOW_UP_LINK, _bind(handlers.follow_up_link, **ttl), query=True)
    runtime.on_request(subjects.QRY_RESPONSE_FOLLOW_UP_TOKEN, _bind(handlers.follow_up_token, link_secret=secret, **ttl),
                       query=True)
    runtime.on_request(subjects.QRY_RESPONSE_SUMMONS, handlers.list_summons, query=True)
    runtime.every(15.0, handlers.count_summons)
    runtime.documents(
        SummonsReported, SummonsOnSite, SummonsResolved, SummonsPaused, SummonsResumed,
        ExtensionRequested, ExtensionGranted, ExtensionRefused, SummonsReturned, SummonsTransferred,
        WhistleVerified, WhistleClosed, WhistleFollowedUp, WhistleReopened,
    )
    return runtime
