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
    place_within_m: float = Field(default=150.0, gt=0, le=5000, description="How far from a building's centre a bare"
                                  " lat/long (Open311) is still placed at it: more places more points,"
                                  " some at the wrong building; less refuses more of them")
    nice: int = Field(default=5, ge=0, le=19, description="CPU priority: dispatch yields to the front door (intake,"
                      " the gateway) under load, and goes before the ledger; 0 to turn off")
