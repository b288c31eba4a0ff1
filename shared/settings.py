"""Settings common to every service; each service subclasses with its own env prefix."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.auth import check_secret
from shared.nats_auth import with_user
from shared.partitions import DEFAULT_PARTITIONS
from shared.signing import Signer, Verifier
from shared.streams import RETENTION_DAYS


def replica_name(configured: str) -> str:
    """The replica's name: as configured, else this host and process."""
    return configured or f"{socket.gethostname()}-{os.getpid()}"


def nats_servers(url: str) -> list[str]:
    """`NATS_URL` as the client's server list: one URL, or several comma-separated (a cluster's nodes)."""
    return [u.strip() for u in url.split(",") if u.strip()]


def signing_secret(value: SecretStr | str | None, name: str) -> SecretStr:
    """A signing secret setting (`name`, for the message): refused when missing or shorter than 32 bytes,
    so a process with no secret of its own refuses to start; there is no default anywhere."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return SecretStr(check_secret(raw, name))


class ServiceSettings(BaseSettings):
    """NATS, Postgres and the private telemetry port. `NATS_URL` / `DATABASE_URL` are unprefixed."""

    # a refused setting's message never repeats its value: it may be a secret (signing keys, passwords)
    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    nats_url: str = Field(
        default="nats://127.0.0.1:4250", validation_alias=AliasChoices("NATS_URL", "nats_url"),
        description="One server, or a cluster's nodes comma-separated: the client fails over between them",
    )
    nats_user: str | None = Field(
        default=None, validation_alias=AliasChoices("NATS_USER", "nats_user"),
        description="The service's NATS user (shared/nats_auth.py), with NATS_PASSWORD_FILE",
    )
    nats_password_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("NATS_PASSWORD_FILE", "nats_password_file"),
        description="A file holding NATS_USER's password (a compose secret), put into every NATS_URL server at"
        " start, so the password is in no environment variable",
    )
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
    )
    database_password_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_PASSWORD_FILE", "database_password_file"),
        description="A file holding the service's own Postgres role's password (a compose secret), put into"
        " DATABASE_URL at start, so the password is in no environment variable",
    )
    declare_streams: bool = Field(
        default=True, validation_alias=AliasChoices("WHISTLE_DECLARE_STREAMS", "declare_streams"),
        description="Create or update the streams at start; false where only an admin may (NATS permissions):"
        " the service then waits for them",
    )
    stream_replicas: int = Field(
        default=1, ge=1, le=5, validation_alias=AliasChoices("WHISTLE_STREAM_REPLICAS", "stream_replicas"),
        description="Replicas of every stream (3 on a 3-node cluster)",
    )
    partitions: int = Field(
        default=DEFAULT_PARTITIONS, ge=1, le=256, validation_alias=AliasChoices("WHISTLE_PARTITIONS", "partitions"),
        description="Partitions of the domain events, by whistle: the most replicas that share a service's work"
        " (more partitions, more durables and fetches; every process of a system must agree)",
    )
    replica: str = Field(
        default="", validation_alias=AliasChoices("WHISTLE_REPLICA", "replica"),
        description="This process's name among its service's replicas, the same across its restarts so its"
        " partitions wait for it (empty: host name and pid)",
    )
    lease_ttl_s: float = Field(
        default=6.0, gt=0, description="How long a silent replica keeps its partitions: longer rides out longer"
        " pauses, shorter hands a dead one's partitions over sooner")
    lease_round_s: float = Field(default=1.5, gt=0, description="How often a replica beats and rebalances")
    telemetry_port: int = Field(default=0, description="Private /metrics and /healthz port (0: none)")
    log_json: bool = Field(default=True, validation_alias=AliasChoices("WHISTLE_LOG_JSON", "log_json"))
    batch_size: int = Field(default=256, ge=1, le=4096, description="Pull batch size")
    request_workers: int = Field(
        default=8, ge=1, le=64, description="Gateway requests a service handles at once (each with its own connection)",
    )
    max_deliver: int = Field(
        default=5, ge=1, description="Attempts of a message that fails on its own before it is dead-lettered"
        " (transient faults, the database or NATS away, never count)",
    )
    crash_deliver: int = Field(
        default=50, ge=2, description="Deliveries the server makes of a message never acknowledged (its process"
        " died handling it every time) before the max-deliveries advisory dead-letters it",
    )
    ack_wait_s: float = Field(
        default=10.0, gt=0, description="How long a delivered message may go unacknowledged before the server"
        " sends it again: what a crashed process's messages wait (messages kept longer on purpose, held or"
        " retried in place, have it renewed)",
    )
    nack_delay_s: float = Field(default=1.0, ge=0, description="Delay before redelivery after a transient fault")
    nice: int = Field(
        default=0, ge=0, le=19,
        description="CPU priority when the machine is busy, for the process and its Postgres backends where"
        " they run on the same host: 0 goes first, 19 last. Read models yield to intake and timers.",
    )
    hold_max_s: float = Field(
        default=5.0, gt=0, description="Longest a message that came before its time is held (unacked) in memory",
    )
    # signed commands (shared/signing.py): no defaults; a process without them refuses to start
    command_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("WHISTLE_COMMAND_KEY", "command_key"),
        description='This process\'s own signing secret, "name:base64" of 32 bytes, signing the commands it sends'
        " (the gateway, and the services that ask another one as the system)",
    )
    command_key_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("WHISTLE_COMMAND_KEY_FILE", "command_key_file"),
        description="A file holding WHISTLE_COMMAND_KEY (a compose secret)",
    )
    command_verify_keys: str | None = Field(
        default=None, validation_alias=AliasChoices("WHISTLE_COMMAND_VERIFY_KEYS", "command_verify_keys"),
        description='This service\'s keys, one per signer, "signer@owner:base64,…" (shared/signing.py): a command'
        " signed by none of them, or changed since, is refused 401",
    )
    command_verify_keys_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("WHISTLE_COMMAND_VERIFY_KEYS_FILE", "command_verify_keys_file"),
        description="A file holding WHISTLE_COMMAND_VERIFY_KEYS",
    )

    reporter_retention_days: float = Field(
        default=RETENTION_DAYS, gt=0,
        validation_alias=AliasChoices("WHISTLE_REPORTER_RETENTION_DAYS", "reporter_retention_days"),
        description="Days after a whistle is struck off (closed) when every service deletes its reporter's personal"
        " data (name, phone, e-mail, consents); a reopened whistle is kept while open",
    )
    reporter_purge_every_s: float = Field(
        default=3600, gt=0, validation_alias=AliasChoices("WHISTLE_REPORTER_PURGE_EVERY_S", "reporter_purge_every_s"),
        description="How often each service looks for reporter data past its retention",
    )

    @model_validator(mode="after")
    def _password_from_file(self) -> ServiceSettings:
        if self.database_password_file is not None:
            self.database_url = with_password(self.database_url, self.database_password_file.read_text().strip())
        if self.nats_password_file is not None:
            if not self.nats_user:
                raise ValueError("NATS_PASSWORD_FILE needs NATS_USER / NATS_PASSWORD_FILE 需要同时设置 NATS_USER")
            self.nats_url = with_user(self.nats_url, self.nats_user, self.nats_password_file.read_text().strip())
        if self.command_key_file is not None:
            self.command_key = SecretStr(self.command_key_file.read_text().strip())
        if self.command_verify_keys_file is not None:
            self.command_verify_keys = self.command_verify_keys_file.read_text().strip()
        if self.command_key is not None:  # malformed: refused now, not at the first command
            Signer.parse(self.command_key.get_secret_value())
        if self.command_verify_keys is not None:
            Verifier.parse(self.command_verify_keys)
        return self

    def command_signer(self) -> Signer:
        """This process's signer; SecretError when it has no key (it must not start)."""
        return Signer.parse(self.command_key.get_secret_value() if self.command_key else None)

    def command_verifier(self) -> Verifier:
        """The signers' keys for this service; SecretError when there are none (an owner must not start)."""
        return Verifier.parse(self.command_verify_keys)


def with_password(dsn: str, password: str) -> str:
    """`dsn` with its password replaced (the user and everything else kept)."""
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))
