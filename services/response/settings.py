"""Response's settings (env prefix RESPONSE_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ResponseSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RESPONSE_", extra="ignore")
    nice: int = Field(default=5, ge=0, le=19, description="CPU priority (its summons.issued projection can"
                      " wait a little while intake and timers are busy; commands are light); 0 to turn off")
