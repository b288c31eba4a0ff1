"""Ledger's settings (env prefix LEDGER_)."""

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class LedgerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore")
