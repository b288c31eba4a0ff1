"""Notifier's settings (env prefix NOTIFIER_)."""

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.notifier.domain import Backoff
from shared.contacts import ContactRule
from shared.settings import ServiceSettings, signing_secret

DEFAULT_CATALOGUE = Path(__file__).resolve().parents[1] / "intake" / "catalogue.json"


class NotifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    default_rule: ContactRule | None = Field(
        default=None, description="The community default for anyone without a contact rule, JSON like a PUT"
        " body, e.g. the community's WeCom group robot; unset: they are not notified")
    public_base_url: str = Field(
        default="http://127.0.0.1:8080", validation_alias=AliasChoices("WHISTLE_PUBLIC_BASE_URL", "public_base_url"),
        description="Where people open links: {this}/console/summons/{id}, {this}/r/{token}")
    catalogue_file: Path = Field(default=DEFAULT_CATALOGUE, description="Category names for the messages")
    link_secret: SecretStr | None = Field(
        default=None, validate_default=True,  # none: the service refuses to start without the system's secret
        validation_alias=AliasChoices("WHISTLE_AUTH_SECRET", "link_secret"),
        description="Key of the one-tap report links (the system's secret, which the gateway checks them with)")
    ack_link_default_s: float = Field(
        default=24 * 3600, gt=0, description="Life of a one-tap report link when the summons' report deadline is"
        " not known yet at sending: longer leaves a link usable after a late deadline, shorter may kill it early")

    @field_validator("link_secret")
    @classmethod
    def _link_secret(cls, value: SecretStr | None) -> SecretStr:
        return signing_secret(value, "WHISTLE_AUTH_SECRET")

    # sending
    send_concurrency: int = Field(
        default=128, ge=1, le=1024,
        description="Attempts in flight at once (also the most a kill -9 can make a channel see twice)")
    issued_in_flight: int = Field(
        default=3, ge=1, le=8,
        description="Batches of new summons taken in at once (nothing earlier can touch a new summons); a batch"
        " with any other summons event waits until those before it are done.")
    claim_batch: int = Field(default=256, ge=1, le=4096, description="Due notifications claimed per round trip")
    handoff_most: int = Field(
        default=512, ge=0, le=8192, description="Notifications due now that the consumers hand the sender in memory"
        " (written claimed) beyond those it is sending: more skips more claim queries in a burst, and a kill -9"
        " leaves more waiting out their lease; 0: every one is claimed from the table")
    poll_s: float = Field(default=1.0, gt=0, le=60, description="Longest wait between looks for due rows"
                          " (new rows wake the sender at once through Postgres NOTIFY)")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="One attempt's time limit")
    max_attempts: int = Field(default=6, ge=1, le=50, description="Attempts before a notification fails")
    retry_first_s: float = Field(default=1.0, gt=0, description="Wait before the second attempt")
    retry_factor: float = Field(default=4.0, ge=1, description="Each later wait is this many times the one before")
    retry_max_s: float = Field(default=600.0, gt=0, description="Longest wait between attempts")

    # channels: each base URL or host is a setting, so tests point them at local fakes
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list, description='Hosts outgoing webhooks may call, JSON, e.g. ["hooks.example.org"];'
        " empty: none")
    wecom_base_url: str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    dingtalk_base_url: str = "https://oapi.dingtalk.com/robot/send"
    smtp_host: str = Field(default="", description="Empty: email is not configured (an email step fails at once)")
    smtp_port: int = 25
    smtp_tls: bool = Field(default=False, description="Implicit TLS (port 465)")
    smtp_starttls: bool = Field(default=False, description="STARTTLS after connecting")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = "whistle@xingcheng-7.example"
    sms_base_url: str = Field(default="", description="The SMS gateway's template API; empty: not configured")
    sms_api_key: SecretStr = SecretStr("")
    sms_sign_name: str = Field(default="兴城街道", description="The approved signature (签名) of every SMS")
    sms_templates: dict[str, str] = Field(
        default_factory=lambda: {"whistle.verified": "SMS_WHISTLE_FOLLOW_UP", "summons.issued": "SMS_WHISTLE_SUMMONS",
                                 "account.signin_link": "SMS_WHISTLE_SIGNIN"},
        description="Approved template code per event kind; others use sms_default_template")
    sms_default_template: str = "SMS_WHISTLE_NOTICE"

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.retry_first_s, self.retry_factor, self.retry_max_s)
