"""Response's settings (env prefix RESPONSE_)."""

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, signing_secret


class ResponseSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RESPONSE_", extra="ignore")
    nice: int = Field(default=5, ge=0, le=19, description="CPU priority (its summons.issued projection can"
                      " wait a little while intake and timers are busy; commands are light); 0 to turn off")
    link_secret: SecretStr | None = Field(
        default=None, validate_default=True,  # none: the service refuses to start without the system's secret
        validation_alias=AliasChoices("WHISTLE_AUTH_SECRET", "link_secret"),
        description="Key of the follow-up links' tokens (the system's secret, as the runner hands every service)")
    follow_up_link_ttl_s: float = Field(
        default=7 * 24 * 3600, gt=0, description="How long a resident's follow-up link can be answered: longer"
        " catches late answers, shorter leaves fewer live links in old text messages")

    @field_validator("link_secret")
    @classmethod
    def _link_secret(cls, value: SecretStr | None) -> SecretStr:
        return signing_secret(value, "WHISTLE_AUTH_SECRET")
