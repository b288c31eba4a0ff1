"""Ledger's settings (env prefix LEDGER_)."""

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.ledger.rates import DEFAULT_WEIGHTS, check_weights
from shared.settings import ServiceSettings


class LedgerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore")
    nice: int = Field(default=10, ge=0, le=19, description="CPU priority: the ledger is a read model, it yields the"
                      " CPU to intake and timers under load; 0 to turn off")
    score_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS),
        description="Weights of the combined score, JSON in LEDGER_SCORE_WEIGHTS:"
                    ' {"response": 0.1, "resolution": 0.45, "satisfaction": 0.45}; a missing rate weighs 0',
    )

    @field_validator("score_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        return check_weights(value)
