"""Settings of the runner (env prefix WHISTLE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.partitions import DEFAULT_PARTITIONS
from shared.streams import RETENTION_DAYS


class RunnerSettings(BaseSettings):
    # a refused setting's message never repeats its value: it may be a secret
    model_config = SettingsConfigDict(env_prefix="WHISTLE_", extra="ignore", hide_input_in_errors=True)
    home: Path = Field(default=Path(".whistle"), description="State: NATS store, Postgres data, logs, credentials")
    port: int = 8080
    host: str = "127.0.0.1"
    nats_port: int = Field(default=4250, description="Client port of the embedded nats-server (with cluster: of"
                           " node 1; nodes 2 and 3 take the next two)")
    cluster: bool = Field(
        default=False, description="Three embedded nats-server nodes, every stream R3, instead of one",
    )
    nats_cluster_port: int = Field(
        default=6250, description="Route port of cluster node 1; nodes 2 and 3 take the next two",
    )
    stream_replicas: int = Field(
        default=1, ge=1, le=5, description="Replicas of every stream on a NATS_URL given (the embedded cluster: 3)",
    )
    replicas: int = Field(
        default=1, ge=1, le=8, description="Processes of each service; they share the partitions of the work"
        " (the gateways share the port)",
    )
    partitions: int = Field(
        default=DEFAULT_PARTITIONS, ge=1, le=256,
        description="Partitions of the domain events by whistle: the most replicas a service can spread over",
    )
    telemetry_base_port: int = 9101
    reporter_retention_days: float = Field(
        default=RETENTION_DAYS, gt=0, description="As every service reads it: the streams it declares keep"
        " events no longer (shared/streams.py)")
    demo: bool = True
    nats_auth: bool = Field(default=True, description="The embedded NATS: a user per service, each allowed only its"
                            " own subjects (shared/nats_auth.py); false: anyone reaching the port may do anything")
    auth_secret: str | None = Field(
        default=None, description="The system's secret, at least 32 bytes (unset: made once into <home>/secret)")
    signing_keys: str | None = Field(
        default=None, description='Bearer token keys, "kid:secret,kid:secret", the first signing (unset: made once'
        " into <home>/signing_keys; `whistle rotate-key` adds a new one and keeps the one before)")
    token_ttl_s: float = Field(default=30 * 24 * 3600, gt=0, description="Life of the tokens in credentials.json")
    maintenance_nice: int = Field(
        default=10, ge=0, le=19,
        description="CPU priority of the embedded Postgres's autovacuum workers (0 leaves them): upkeep"
        " yields to intake and the clocks when the machine is busy, like the ledger",
    )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"
