"""Ledger's composition root."""

from __future__ import annotations

from pathlib import Path

from services.ledger.board import BoardHandlers
from services.ledger.dead_letter_handlers import DeadLetterHandlers
from services.ledger.dead_letters import parse_advisory, parse_dead_letter, refuse_stray
from services.ledger.handlers import LedgerHandlers, purge_reporters
from services.ledger.inbox import InboxHandlers
from services.ledger.payloads import (
    AuditAsk,
    BoardAsk,
    DeadLetterList,
    DeadLetterRef,
    InboxAsk,
    Open311Query,
    PeriodAsk,
    RatesAsk,
    WhistleList,
    WhistleRef,
)
from services.ledger.settings import LedgerSettings
from shared import subjects
from shared.contracts import Role
from shared.runtime import Consumer, Request, ServiceRuntime

STAFF: frozenset[Role] = frozenset({"dispatcher", "supervisor"})
SUPERVISORS: frozenset[Role] = frozenset({"supervisor"})


def build(settings: LedgerSettings | None = None) -> ServiceRuntime:
    settings = settings or LedgerSettings()
    runtime = ServiceRuntime("ledger", settings, Path(__file__).with_name("migrations"))
    handlers = LedgerHandlers(runtime, settings.score_weights)
    dead = DeadLetterHandlers(runtime)
    # no inbox: the timeline's unique event id drops what it already holds (services/ledger/store.py)
    # nobody waits on the projection: a batch gathers for a tenth of a second (Consumer.linger_s)
    runtime.consume(Consumer(">", handlers.on_events, durable="ledger-events", batch=True, dedup=lambda _: None,
                             after_commit=handlers.board_changed, linger_s=0.1))
    for i, subject in enumerate(subjects.STRAY_EVENTS):  # nothing on the events stream goes unread
        runtime.consume(Consumer(subject, dead.on_stray, durable=f"ledger-strays-{i}", parse=refuse_stray,
                                 dedup=lambda _: None, partitioned=False))
    # the recorders of dead letters never dead-letter themselves: what fails is retried until it passes
    runtime.consume(Consumer(
        f"{subjects.DEADLETTER}.>", dead.on_dead_letter, stream=subjects.DEADLETTER_STREAM,
        durable="ledger-deadletters", parse=parse_dead_letter, dedup=lambda d: d.key, max_deliver=-1,
    ))
    runtime.consume(Consumer(
        f"{subjects.MAX_DELIVERIES_ADVISORY}.>", dead.on_max_deliveries, stream=subjects.ADVISORIES_STREAM,
        durable="ledger-advisories", parse=parse_advisory, dedup=lambda a: a.key, max_deliver=-1,
    ))
    runtime.serve(
        # a responder sees only whistles it has a summons on (the handler checks)
        Request(subjects.QRY_LEDGER_WHISTLE, handlers.whistle, WhistleRef, STAFF | {"responder"}, query=True),
        Request(subjects.QRY_LEDGER_WHISTLES, handlers.whistles, WhistleList, STAFF, query=True),
        Request(subjects.QRY_LEDGER_DEADLETTERS, dead.dead_letters, DeadLetterList, SUPERVISORS, query=True),
        Request(subjects.QRY_LEDGER_DEADLETTER, dead.dead_letter, DeadLetterRef, SUPERVISORS, query=True),
        Request(subjects.CMD_LEDGER_DEADLETTER_REPLAY, dead.replay, DeadLetterRef, SUPERVISORS),
        # a responder its own unit's only (the handler checks)
        Request(subjects.QRY_LEDGER_RATES, handlers.rates, RatesAsk, STAFF | {"responder"}, query=True),
        Request(subjects.QRY_LEDGER_RANKING, handlers.ranking, PeriodAsk, STAFF, query=True),
        # system: the Open311 edge's public reads
        Request(subjects.QRY_LEDGER_OPEN311, handlers.open311, Open311Query, STAFF | {"system"}, query=True),
        # a responder its own summons only (the handler narrows); system: the console's live board
        Request(subjects.QRY_LEDGER_BOARD, BoardHandlers().board, BoardAsk, STAFF | {"responder", "system"},
                query=True),
        Request(subjects.QRY_LEDGER_INBOX, InboxHandlers().inbox, InboxAsk, SUPERVISORS, query=True),
        Request(subjects.QRY_LEDGER_AUDIT, handlers.audit, AuditAsk, SUPERVISORS, query=True),
    )

    async def purge(rt: ServiceRuntime) -> None:
        purged = await purge_reporters(rt.pool, settings.reporter_retention_days)
        if purged:
            rt.log.info("reporters.purged", whistles=purged, retention_days=settings.reporter_retention_days)

    runtime.every(settings.reporter_purge_every_s, purge)
    return runtime
