"""Routing's settings (env prefix ROUTING_)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.routing.domain import DEFAULT_RULES
from services.routing.registry import DEFAULT_REGISTRY
from shared.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_", extra="ignore")
    registry_file: Path = DEFAULT_REGISTRY
    rules_file: Path = DEFAULT_RULES
    rules_check_s: float = 5.0
    nice: int = Field(default=5, ge=0, le=19, description="CPU priority: dispatch yields to the front door (intake,"
                      " the gateway) under load, and goes before the ledger; 0 to turn off")
