"""Ledger's composition root."""

from __future__ import annotations

from pathlib import Path

from services.ledger.board import BoardHandlers
from services.ledger.dead_letter_handlers import DeadLetterHandlers
from services.ledger.dead_letters import parse_advisory, parse_dead_letter, refuse_stray
from services.ledger.handlers import LedgerHandlers
from services.ledger.inbox import InboxHandlers
from services.ledger.settings import LedgerSettings
from shared import subjects
from shared.runtime import ServiceRuntime


def build(settings: LedgerSettings | None = None) -> ServiceRuntime:
    settings = settings or LedgerSettings()
    runtime = ServiceRuntime("ledger", settings, Path(__file__).with_name("migrations"))
    handlers = LedgerHandlers(runtime, settings.score_weights)
    dead = DeadLetterHandlers(runtime)
    runtime.on_events(">", handlers.on_events, durable="ledger-events", batch=True,
                       after_commit=handlers.board_changed)
    for i, subject in enumerate(subjects.STRAY_EVENTS):  # nothing on the events stream goes unread
        runtime.on_events(subject, dead.on_stray, durable=f"ledger-strays-{i}", parse=refuse_stray,
                          dedup=lambda _: None, partitioned=False)
    # the recorders of dead letters never dead-letter themselves: what fails is retried until it passes
    runtime.on_events(
        f"{subjects.DEADLETTER}.>", dead.on_dead_letter, stream=subjects.DEADLETTER_STREAM,
        durable="ledger-deadletters", parse=parse_dead_letter, dedup=lambda d: d.key, max_deliver=-1,
    )
    runtime.on_events(
        f"{subjects.MAX_DELIVERIES_ADVISORY}.>", dead.on_max_deliveries, stream=subjects.ADVISORIES_STREAM,
        durable="ledger-advisories", parse=parse_advisory, dedup=lambda a: a.key, max_deliver=-1,
    )
    runtime.on_request(subjects.QRY_LEDGER_WHISTLE, handlers.whistle, query=True)
    runtime.on_request(subjects.QRY_LEDGER_WHISTLES, handlers.whistles, query=True)
    runtime.on_request(subjects.QRY_LEDGER_DEADLETTERS, dead.dead_letters, query=True)
    runtime.on_request(subjects.QRY_LEDGER_DEADLETTER, dead.dead_letter, query=True)
    runtime.on_request(subjects.CMD_LEDGER_DEADLETTER_REPLAY, dead.replay)
    runtime.on_request(subjects.QRY_LEDGER_RATES, handlers.rates, query=True)
    runtime.on_request(subjects.QRY_LEDGER_RANKING, handlers.ranking, query=True)
    runtime.on_request(subjects.QRY_LEDGER_OPEN311, handlers.open311, query=True)
    runtime.on_request(subjects.QRY_LEDGER_BOARD, BoardHandlers().board, query=True)
    runtime.on_request(subjects.QRY_LEDGER_INBOX, InboxHandlers().inbox, query=True)
    return runtime
