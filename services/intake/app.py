"""Intake's composition root."""

from __future__ import annotations

from pathlib import Path

from services.intake.domain import load_catalogue
from services.intake.handlers import IntakeHandlers
from services.intake.settings import IntakeSettings
from shared import subjects
from shared.contracts import WhistleBlown, WhistleGrouped
from shared.runtime import ServiceRuntime


def build(settings: IntakeSettings | None = None) -> ServiceRuntime:
    settings = settings or IntakeSettings()
    runtime = ServiceRuntime("intake", settings, Path(__file__).with_name("migrations"))
    handlers = IntakeHandlers(load_catalogue(settings.catalogue_file), settings.class_window, settings.class_threshold)
    runtime.on_request(subjects.CMD_INTAKE_BLOW, handlers.blow)
    runtime.on_request(subjects.CMD_INTAKE_IMPORT, handlers.import_orders)
    runtime.on_request(subjects.QRY_INTAKE_CATEGORIES, handlers.categories, query=True)
    runtime.on_request(subjects.QRY_INTAKE_CLASSES, handlers.list_classes, query=True)
    runtime.on_request(subjects.CMD_INTAKE_API_KEY_ISSUE, handlers.issue_api_key)
    runtime.on_request(subjects.QRY_INTAKE_API_KEY_CHECK, handlers.check_api_key, query=True)
    runtime.documents(WhistleBlown, WhistleGrouped)
    return runtime
