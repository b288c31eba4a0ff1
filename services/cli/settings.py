"""Settings of the runner (env prefix WHISTLE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RunnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WHISTLE_", extra="ignore")
    home: Path = Field(default=Path(".whistle"), description="State: NATS store, Postgres data, logs, credentials")
    port: int = 8080
    host: str = "127.0.0.1"
    nats_port: int = 4250
    telemetry_base_port: int = 9101
    demo: bool = True
    auth_secret: str | None = None
    maintenance_nice: int = Field(
        default=10, ge=0, le=19,
        description="CPU priority of the embedded Postgres's autovacuum workers (0 leaves them): upkeep"
        " yields to intake and the clocks when the machine is busy, like the ledger",
    )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"
