"""Response's settings (env prefix RESPONSE_)."""

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ResponseSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RESPONSE_", extra="ignore")
