"""Intake's composition root."""

from __future__ import annotations

from pathlib import Path

from services.intake.domain import load_catalogue
from services.intake.handlers import IntakeHandlers, purge_reporters
from services.intake.payloads import (
    ApiKeyCheck,
    ApiKeyIssue,
    ApiKeyRevoke,
    BlowWhistle,
    ClassList,
    ImportBatch,
    ReporterContactAsk,
    ReporterErase,
)
from services.intake.settings import IntakeSettings
from shared import subjects
from shared.contracts import (
    Role,
    WhistleBlown,
    WhistleClosed,
    WhistleGrouped,
    WhistleReopened,
    WhistleReporterErased,
)
from shared.runtime import Consumer, EventRoutes, Request, ServiceRuntime, Together

STAFF: frozenset[Role] = frozenset({"dispatcher", "supervisor"})
SUPERVISORS: frozenset[Role] = frozenset({"supervisor"})
SYSTEM: frozenset[Role] = frozenset({"system"})


def build(settings: IntakeSettings | None = None) -> ServiceRuntime:
    settings = settings or IntakeSettings()
    catalogue = load_catalogue(settings.catalogue_file)
    handlers = IntakeHandlers(catalogue, settings.class_window, settings.class_threshold)
    runtime = ServiceRuntime("intake", settings, Path(__file__).with_name("migrations"))
    # problem classes from new whistles; when each whistle is struck off or reopened, for how long its
    # reporter's data is kept (only those subjects: every whistle.> event was a fifth of intake's CPU)
    events = (EventRoutes().batch(WhistleBlown.SUBJECT, handlers.group)
              .batch((WhistleClosed.SUBJECT, WhistleReopened.SUBJECT), handlers.whistle_times))
    # no inbox: a whistle is grouped once (`grouped_among`), its times are set with GREATEST; routing summons
    # from whistle.blown itself, so nobody waits on these: a batch gathers for a tenth of a second (Consumer.linger_s)
    runtime.consume(Consumer(events.subjects, events, batch=True, durable="intake-events", dedup=lambda _: None,
                             linger_s=0.1))

    async def purge(rt: ServiceRuntime) -> None:
        purged = await purge_reporters(rt.pool, settings.reporter_retention_days)
        if purged:
            rt.log.info("reporters.purged", whistles=purged, retention_days=settings.reporter_retention_days)

    runtime.every(settings.reporter_purge_every_s, purge)
    runtime.serve(
        # the many blows of a moment share one transaction
        Request(subjects.CMD_INTAKE_BLOW, handlers.blow, BlowWhistle, STAFF, together=Together(
            max_batch=settings.blow_max_batch, linger_s=settings.blow_linger_ms / 1e3)),
        Request(subjects.CMD_INTAKE_IMPORT, handlers.import_orders, ImportBatch, STAFF),
        Request(subjects.QRY_INTAKE_CATEGORIES, handlers.categories, query=True),  # public: anyone may read it
        Request(subjects.QRY_INTAKE_CLASSES, handlers.list_classes, ClassList, STAFF, query=True),
        Request(subjects.CMD_INTAKE_API_KEY_ISSUE, handlers.issue_api_key, ApiKeyIssue, SUPERVISORS),
        Request(subjects.CMD_INTAKE_API_KEY_REVOKE, handlers.revoke_api_keys, ApiKeyRevoke, SUPERVISORS),
        Request(subjects.CMD_INTAKE_REPORTER_ERASE, handlers.erase_reporter, ReporterErase, SUPERVISORS),
        # system: the Open311 edge, and the notifier
        Request(subjects.QRY_INTAKE_API_KEY_CHECK, handlers.check_api_key, ApiKeyCheck, SYSTEM, query=True),
        Request(subjects.QRY_INTAKE_REPORTER_CONTACT, handlers.reporter_contact, ReporterContactAsk, SYSTEM,
                query=True),
    )
    runtime.documents(WhistleBlown, WhistleGrouped, WhistleReporterErased)
    return runtime
