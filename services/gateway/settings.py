"""Gateway's settings (env prefix GATEWAY_)."""

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared import auth
from shared.settings import ServiceSettings, signing_secret


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")
    host: str = "127.0.0.1"
    port: int = 8080
    reuse_port: bool = Field(default=False, description="Share the port with the other gateway replicas on this"
                             " host (SO_REUSEPORT: the kernel spreads the connections)")
    # no defaults: a gateway without secrets of its own refuses to start (`whistle up` generates them)
    auth_secret: SecretStr | None = Field(
        default=None, validate_default=True, validation_alias=AliasChoices("WHISTLE_AUTH_SECRET", "auth_secret"),
        description="The system's secret (at least 32 bytes): one-tap links and the console's cookies are"
        " signed with keys derived from it, and bearer tokens too unless signing_keys is set",
    )
    signing_keys: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("WHISTLE_SIGNING_KEYS", "GATEWAY_SIGNING_KEYS", "signing_keys"),
        description='Bearer token keys, "kid:secret,kid:secret" (each secret at least 32 bytes); the first signs,'
        " every one listed is accepted: rotate by putting a new key first and keeping the old one second until"
        f' its tokens are gone. Unset: one key "{auth.DEFAULT_KID}", the auth secret',
    )
    token_ttl_s: float = Field(
        default=auth.DEFAULT_TTL_S, gt=0, validation_alias=AliasChoices("WHISTLE_TOKEN_TTL_S", "token_ttl_s"),
        description="Life of the bearer tokens the gateway issues (a new responder's, a supervisor's reissue)",
    )
    revocations_refresh_s: float = Field(
        default=15.0, gt=0, description="How often the revoked tokens are read again whatever the notices say"
        " (the safety net under routing's notices, which reach every gateway at once)",
    )
    request_timeout_s: float = 5.0
    max_body_bytes: int = 64 * 1024
    max_import_bytes: int = 900 * 1024  # /v1/imports: 1,000 work orders, under NATS's 1 MB messages
    rate_per_s: float = Field(default=2000.0, gt=0, description="Requests a second per caller, on average")
    rate_burst: float = Field(default=4000.0, ge=1, description="Requests a caller may make at once")
    rate_overrides: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description='Per caller (rate, burst), e.g. {"responder:m-b03-secretary": [5, 10]}'
    )
    open311_jurisdiction: str = Field(default="xingcheng-7.fangshan.beijing", description="Open311 jurisdiction_id")

    @field_validator("auth_secret")
    @classmethod
    def _auth_secret(cls, value: SecretStr | None) -> SecretStr:
        return signing_secret(value, "WHISTLE_AUTH_SECRET")

    @field_validator("signing_keys")
    @classmethod
    def _signing_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            auth.KeyRing.parse(value.get_secret_value())  # refused now, not at the first request
        return value

    def key_ring(self) -> auth.KeyRing:
        """The bearer token keys: WHISTLE_SIGNING_KEYS, else the auth secret alone."""
        if self.signing_keys is not None:
            return auth.KeyRing.parse(self.signing_keys.get_secret_value())
        return auth.KeyRing.single(self.auth_secret.get_secret_value())
