"""Routing's settings (env prefix ROUTING_)."""

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from services.routing.domain import DEFAULT_REGISTRY, DEFAULT_RULES
from shared.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_", extra="ignore")
    registry_file: Path = DEFAULT_REGISTRY
    rules_file: Path = DEFAULT_RULES
