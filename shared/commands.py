"""Command payloads: validated at the gateway (422 with the field) and again by the owner."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared.contracts import Location, ReturnReason, Source, SummonsMove, Tier
from shared.ids import utcnow
from shared.validation import Id, id_fields, text_fields

MAX_DESCRIPTION = 2000
MAX_EXTENSION = timedelta(days=90)  # the furthest a new deadline may be asked for
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]{0,490}$")


class LocationIn(Location):
    """A location as a client gives it: its text free of control characters (named, e.g. location.address)."""

    _texts = text_fields("building", "grid", "unit", "address", "service_point")


class RaiseWhistle(BaseModel):
    """吹哨: raise a problem for the community."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    category: str = Field(min_length=1, max_length=64, description="A code from GET /v1/categories")
    description: str = Field(min_length=1, max_length=MAX_DESCRIPTION, description="What is wrong")
    location: LocationIn
    tier: Tier | None = Field(default=None, description="Handling tier; the category's default when omitted")
    source: Source = Source.community
    reporter: ReporterIn | None = None
    attachments: list[str] = Field(default_factory=list, max_length=5, description="Up to 5 http(s) URLs")

    _texts = text_fields("category", "description", "attachments")

    @field_validator("description")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("description must not be blank")
        return v

    @field_validator("attachments")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not _URL.match(url):
                raise ValueError(f"{url[:80]!r} is not an http(s) URL")
        return v


class ReporterIn(BaseModel):
    """The complainant as given; the phone is masked in everything but intake's own store."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str | None = Field(default=None, max_length=64)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 -]{4,19}$", description="Digits, spaces, dashes")
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$",
                              description="For follow-up; masked like the phone")
    sms_consent: bool = Field(default=False, description="Agrees to be texted the follow-up link (回访短信)"
                              " at this phone once the whistle is verified")
    public_consent: bool = Field(default=False, description="Agrees that the whistle be shown on the public"
                                 " Open311 edge (公开同意); a 12345 call or a service point's is shown only then")

    _texts = text_fields("name", "email")


def mask_phone(phone: str | None) -> str | None:
    """138****5678: enough to recognise, not enough to call."""
    if not phone:
        return phone
    d = "".join(c for c in phone if c.isdigit())
    if len(d) >= 11:  # mobile or with area code: prefix and last four
        return d[:3] + "*" * (len(d) - 7) + d[-4:]
    if len(d) >= 8:
        return "*" * (len(d) - 4) + d[-4:]
    return "*" * max(len(d) - 2, 1) + d[-2:]


def mask_email(email: str | None) -> str | None:
    """z***@example.com: the first letter and the domain."""
    if not email or "@" not in email:
        return email
    local, domain = email.rsplit("@", 1)
    return f"{local[:1]}***@{domain}"


class SummonsAction(BaseModel):
    """A responder's move on its own summons."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    summons_id: str = Field(min_length=1, max_length=64)
    action: SummonsMove
    note: str | None = Field(default=None, max_length=1000)
    reason_code: ReturnReason | None = None
    reason: str | None = Field(default=None, max_length=1000)
    to_responder_id: str | None = Field(default=None, min_length=1, max_length=64)
    _ids = id_fields("summons_id", "to_responder_id")
    photo_url: str | None = Field(default=None, max_length=500, description="Resolve: a photo of the fix (http(s))")

    @model_validator(mode="after")
    def _details(self) -> SummonsAction:
        if self.photo_url is not None and (self.action is not SummonsMove.resolve or not _URL.match(self.photo_url)):
            raise PydanticCustomError("bad_photo_url", "photo_url: an http(s) URL, on resolve only / 照片须为http(s)链接，仅限办结")
        if self.action is SummonsMove.return_:
            if self.reason_code is None:
                raise PydanticCustomError("missing_reason_code", "a return needs a reason_code / 退单须说明原因")
            if self.reason_code == "other" and not self.reason:
                raise PydanticCustomError("missing_reason", "reason_code 'other' needs a reason / 其他原因须填写说明")
        if self.action is SummonsMove.transfer and not (self.to_responder_id and self.reason):
            raise PydanticCustomError("missing_target", "a transfer needs to_responder_id and a reason / 转派须指定对象和原因")
        return self

    def details(self) -> dict:
        """What the domain needs for a return or a transfer."""
        if self.action is SummonsMove.return_:
            return {"reason_code": self.reason_code, "reason": self.reason}
        if self.action is SummonsMove.transfer:
            return {"to_responder_id": self.to_responder_id, "reason": self.reason}
        if self.action is SummonsMove.resolve and self.photo_url:
            return {"photo_url": self.photo_url}
        return {}


class FollowUp(BaseModel):
    """回访: what the resident said."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    solved: bool
    satisfaction: Literal["satisfied", "basically_satisfied", "dissatisfied"]
    note: str | None = Field(default=None, max_length=1000)


class Arbitration(BaseModel):
    """审定: a supervisor names who handles a twice-returned whistle."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    responder_id: Id = Field(min_length=1, max_length=64)
    note: str | None = Field(default=None, max_length=1000)


class ExtensionAsk(BaseModel):
    """延期: a responder asks for a later deadline on one clock (the HTTP body)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    clock: Literal["report", "on_site", "resolve"] = "resolve"
    new_deadline: AwareDatetime = Field(description="The deadline asked for, with its time zone; at most 90 days"
                                        " from now")
    reason: str = Field(min_length=1, max_length=1000)

    _texts = text_fields("reason")

    @field_validator("new_deadline")
    @classmethod
    def _within_90_days(cls, v: AwareDatetime) -> AwareDatetime:
        if v > utcnow() + MAX_EXTENSION:
            raise PydanticCustomError("deadline_too_far", "an extension reaches at most 90 days from now"
                                      " / 延期后的时限不得晚于 90 天后")
        return v


class ExtensionRequest(ExtensionAsk):
    """The same, naming the summons (the command)."""

    summons_id: Id = Field(min_length=1, max_length=64)


class ExtensionDecision(BaseModel):
    """A supervisor's decision on a pending extension."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    summons_id: Id = Field(min_length=1, max_length=64)
    decision: Literal["grant", "refuse"]
    note: str | None = Field(default=None, max_length=1000)


class VerifyWhistle(BaseModel):
    """The dispatcher checks the fix and strikes the whistle off the ledger."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    whistle_id: Id = Field(min_length=1, max_length=64)
    note: str | None = Field(default=None, max_length=1000)
    photo_url: str | None = Field(default=None, max_length=500)


class ResponderIn(BaseModel):
    """A responder as a supervisor writes it (`PUT /v1/responders/{id}`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    kind: Literal["member", "section", "department", "command_centre"]
    name_en: str = Field(min_length=1, max_length=200)
    name_zh: str = Field(min_length=1, max_length=200)
    superior_id: str | None = Field(default=None, max_length=64)
    branch: str | None = Field(default=None, max_length=16)
    building: str | None = Field(default=None, max_length=16)
    skills: list[str] = Field(default_factory=list, max_length=20)
    availability: list[str] = Field(default_factory=list, max_length=14, description="e.g. 'mon-fri 18:00-21:00'")
    max_concurrent: int = Field(default=3, ge=1, le=1000)
    active: bool = True

    _ids = id_fields("superior_id")


class AccountIn(BaseModel):
    """One console account: its user name, its role, and whom it acts as."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    username: Id = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    role: str = Field(pattern=r"^(dispatcher|supervisor|responder)$")
    id: str | None = Field(default=None, min_length=1, max_length=64, description="Who it acts as; the user name if left out")

    _ids = id_fields("id")


class PasswordSet(BaseModel):
    """One password for the accounts listed (a reset names one; `whistle up` sets the demo ones at once)."""

    model_config = ConfigDict(extra="forbid")
    accounts: list[AccountIn] = Field(min_length=1, max_length=5000)
    password: str = Field(min_length=8, max_length=128)


class SigninLinkAsk(BaseModel):
    """Send me a sign-in link (发送登录链接): the user name only; the answer never says whether it exists."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    username: Id = Field(min_length=1, max_length=64)
