"""Escalation's settings (env prefix ESCALATION_)."""

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from services.escalation.policy import DEFAULT_POLICIES
from shared.settings import ServiceSettings


class EscalationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ESCALATION_", extra="ignore")
    policy_file: Path = DEFAULT_POLICIES
