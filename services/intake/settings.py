"""Intake's settings (env prefix INTAKE_)."""

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.intake.domain import DEFAULT_CATALOGUE
from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")
    catalogue_file: Path = DEFAULT_CATALOGUE
    class_window_s: int = Field(default=30 * 86400, ge=1,
                                description="Whistles this close to a class's latest join it (problem classes)")
    class_threshold: int = Field(default=5, ge=2, description="Class size that raises one proactive whistle")
    blow_max_batch: int = Field(default=500, ge=1, description="Most blow requests written in one transaction")
    blow_linger_ms: float = Field(default=1.5, ge=0, le=50,
                                  description="How long a batch's first blow waits for others to join it")

    @property
    def class_window(self) -> timedelta:
        return timedelta(seconds=self.class_window_s)
