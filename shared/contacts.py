"""Contact rules (`PUT /v1/responders/{id}/contacts`): how the notifier reaches one responder.

Checked at the gateway (422 naming the field) and again by the notifier, which also holds the
webhook hosts it may call (the allow-list is its setting, so only it checks that).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import time
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

CHANNELS = ("webhook", "wecom", "dingtalk", "email", "sms")
Channel = Literal["webhook", "wecom", "dingtalk", "email", "sms"]
MOBILE = re.compile(r"^1[3-9]\d{9}$")  # mainland China mobile numbers
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
_ROBOT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,128}$")  # a WeCom robot key, a DingTalk access_token
_DINGTALK_SECRET = re.compile(r"^SEC[A-Za-z0-9]{8,128}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
MAX_DELAY_S = 7 * 86_400


def mobile(value: str) -> str:
    """A mainland mobile number as 11 digits (a +86 prefix is dropped); ValueError otherwise."""
    digits = value.strip().removeprefix("+86").replace(" ", "").replace("-", "")
    if not MOBILE.match(digits):
        raise ValueError("not a mainland mobile number (1[3-9] and 9 digits) / 须为大陆手机号")
    return digits


def webhook_url(value: str) -> str:
    """An http(s) URL with a host; ValueError otherwise."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc} / 网址无效") from None
    if parts.scheme not in ("http", "https") or not host or len(value) > 500 or any(c.isspace() for c in value):
        raise ValueError("not an http(s) URL / 须为 http(s) 网址")
    return value


def webhook_secret(value: str) -> str:
    """A Standard Webhooks secret: whsec_ and the base64 of 24 to 64 bytes."""
    try:
        raw = base64.b64decode(value.removeprefix("whsec_") + "==", validate=False)
    except (binascii.Error, ValueError):
        raw = b""
    if not value.startswith("whsec_") or not 24 <= len(raw) <= 64:
        raise ValueError("a webhook secret is whsec_ + base64 of 24–64 bytes / 密钥格式须为 whsec_…")
    return value


class QuietHours(BaseModel):
    """A daily window, Beijing time, when routine notifications wait (urgent and complex go through)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: str = Field(description="HH:MM, Asia/Shanghai", examples=["22:00"])
    end: str = Field(description="HH:MM; before start: the window crosses midnight", examples=["07:00"])

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError("HH:MM, 00:00–23:59 / 时间格式须为 HH:MM")
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ / 起止时间不能相同")
        return self

    @property
    def window(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class ContactStep(BaseModel):
    """One step: a channel and its address, `delay_s` after the event; or the superior, by its own rule."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    target: Literal["self", "superior"] = Field(
        default="self", description="self: this channel; superior: the superior's own contact rule")
    channel: Channel | None = Field(default=None, validate_default=True, description="webhook, wecom, dingtalk,"
                                    " email or sms; none for the superior")
    address: str | None = Field(
        default=None, max_length=500, validate_default=True,
        description="webhook: URL; wecom: robot key; dingtalk: access_token; email: address; sms: mobile number")
    secret: str | None = Field(default=None, max_length=200, validate_default=True,
                               description="webhook: whsec_… (made for you when left out); dingtalk: SEC…")
    mention: list[str] = Field(default_factory=list, max_length=20,
                               description="wecom / dingtalk: mobile numbers to @ in the group")
    delay_s: int = Field(default=0, ge=0, le=MAX_DELAY_S,
                         description="Seconds after the event; a step after the first runs only while the"
                         " summons is not reported")

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str | None, info: ValidationInfo) -> str | None:
        superior = info.data.get("target") == "superior"
        if superior and v is not None:
            raise ValueError("a step to the superior uses the superior's own rule: no channel / 上级步骤不填渠道")
        if not superior and v is None:
            raise ValueError(f"channel is required: one of {', '.join(CHANNELS)} / 须指定渠道")
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None, info: ValidationInfo) -> str | None:
        channel = info.data.get("channel")
        if info.data.get("target") == "superior":
            if v is not None:
                raise ValueError("a step to the superior has no address / 上级步骤不填地址")
            return v
        if channel is None:  # the channel itself is wrong; that error is reported
            return v
        if not v:
            raise ValueError("address is required / 须填写地址")
        if channel == "webhook":
            return webhook_url(v)
        if channel in ("wecom", "dingtalk"):
            if not _ROBOT_TOKEN.match(v):
                raise ValueError("the robot's key / access_token: 8–128 letters, digits, - or _ / 机器人密钥格式无效")
            return v
        if channel == "email":
            if not _EMAIL.match(v):
                raise ValueError("not an email address / 邮箱格式无效")
            return v
        return mobile(v)

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str | None, info: ValidationInfo) -> str | None:
        channel = info.data.get("channel")
        if channel == "dingtalk":
            if not v or not _DINGTALK_SECRET.match(v):
                raise ValueError("a DingTalk robot needs its signing secret, SEC… / 钉钉机器人须填加签密钥 SEC…")
            return v
        if channel == "webhook":
            return None if v is None else webhook_secret(v)
        if v is not None:
            raise ValueError("only webhook and dingtalk steps have a secret / 仅 webhook、钉钉可填密钥")
        return v

    @field_validator("mention")
    @classmethod
    def _mention(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if v and info.data.get("channel") not in ("wecom", "dingtalk"):
            raise ValueError("only wecom and dingtalk steps mention people / 仅企业微信、钉钉可@成员")
        return [mobile(m) for m in v]


class ContactRule(BaseModel):
    """Ordered steps (WeCom now, SMS after 5 min if not reported, the superior after 15 min), quiet hours,
    and the language of the messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: list[ContactStep] = Field(min_length=1, max_length=10)
    quiet_hours: QuietHours | None = None
    locale: Literal["zh-CN", "en"] = "zh-CN"

    @field_validator("steps")
    @classmethod
    def _in_order(cls, v: list[ContactStep]) -> list[ContactStep]:
        for before, after in zip(v, v[1:], strict=False):
            if after.delay_s < before.delay_s:
                raise ValueError("steps come in the order of their delays / 步骤须按延迟先后排列")
        return v
