"""Intake's settings (env prefix INTAKE_)."""

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from services.intake.domain import DEFAULT_CATALOGUE
from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")
    catalogue_file: Path = DEFAULT_CATALOGUE
