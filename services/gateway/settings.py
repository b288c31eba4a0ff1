"""Gateway's settings (env prefix GATEWAY_)."""

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")
    host: str = "127.0.0.1"
    port: int = 8080
    reuse_port: bool = Field(default=False, description="Share the port with the other gateway replicas on this"
                             " host (SO_REUSEPORT: the kernel spreads the connections)")
    auth_secret: SecretStr = Field(
        default=SecretStr("dev-only-secret"), validation_alias=AliasChoices("WHISTLE_AUTH_SECRET", "auth_secret")
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
