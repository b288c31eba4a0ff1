"""Message contracts: one pydantic model per event, its subject as a constant.

Every event carries `event_id` (UUIDv7), `occurred_at` (UTC), `correlation_id`
(the whistle id), `causation_id` (the event or request that caused it),
`schema_version` and the `actor` who caused it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.ids import uuid7


class Tier(StrEnum):
    """Handling tier: 小事帮办 routine, 急事快办 urgent, 难事特办 complex."""

    routine = "routine"
    urgent = "urgent"
    complex = "complex"


class Source(StrEnum):
    """Where a whistle came from."""

    hotline_12345 = "hotline_12345"  # 接诉即办
    grid_patrol = "grid_patrol"  # 未诉先办
    service_point = "service_point"
    online = "online"
    proactive = "proactive"
    community = "community"


class ResponderKind(StrEnum):
    """The three reports (三报到): party member, street-office section, city department; and the ladder's
    upper rungs (街道指挥中心, 区级), which are told and may look but are never summoned to handle a whistle."""

    member = "member"
    section = "section"
    department = "department"
    command_centre = "command_centre"


NOT_SUMMONABLE = "a command centre is told and may look, but is never summoned / 指挥中心接报、可查看，但不承办"


class SummonsState(StrEnum):
    """Where a summons stands (response owns the lifecycle; the ledger mirrors it)."""

    issued = "issued"
    reported = "reported"  # 报到: acknowledged
    on_site = "on_site"
    resolved = "resolved"
    returned = "returned"  # 退单: given back, someone else is summoned
    transferred = "transferred"  # 转派: handed to a named responder


# summons that no longer count towards their whistle: someone else holds the work now
SUPERSEDED = frozenset({SummonsState.returned, SummonsState.transferred})


class SummonsMove(StrEnum):
    """What a responder does with its own summons (`action` of `cmd.response.act`, the path of
    POST /v1/summons/{id}/{action}): report (报到), arrive, resolve; pause and resume while waiting on
    the resident (the clocks hold); return (退单) or transfer (转派)."""

    report = "report"
    arrive = "arrive"
    resolve = "resolve"
    pause = "pause"
    resume = "resume"
    return_ = "return"
    transfer = "transfer"


class Location(BaseModel):
    """Where the problem is: a building of the community, optionally grid and address."""

    model_config = ConfigDict(extra="forbid")
    building: str = Field(min_length=1, max_length=16, description="Building number, e.g. '7'")
    grid: str | None = Field(default=None, max_length=32, description="Grid id")
    unit: str | None = Field(default=None, max_length=16, description="Entrance / unit of the building (单元)")
    address: str | None = Field(default=None, max_length=200, description="Free-text address")
    service_point: str | None = Field(default=None, max_length=64, description="Named service point")
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False, description="WGS 84 latitude")
    long: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False, description="WGS 84 longitude")

    @model_validator(mode="after")
    def _point_whole(self) -> Location:
        if (self.lat is None) != (self.long is None):
            raise ValueError("lat and long come together / 经纬度须同时提供")
        return self


class Reporter(BaseModel):
    """Who complained. Events and every read carry the phone masked (138****5678); intake keeps it whole."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=64)
    phone: str | None = Field(default=None, max_length=32, description="Masked except in intake's own store")
    email: str | None = Field(default=None, max_length=254, description="Masked (z***@example.com) like the phone")
    sms_consent: bool = Field(default=False, description="Agreed to be texted the follow-up link (回访短信)")
    public_consent: bool = Field(default=False, description="Agreed that the whistle be shown on the public"
                                 " Open311 edge (公开同意), whatever its source")


class Event(BaseModel):
    """Base of every domain event."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    SUBJECT: ClassVar[str] = ""

    schema_version: int = Field(default=1, description="Version of this event's schema")
    event_id: UUID = Field(default_factory=uuid7, description="UUIDv7, also the Nats-Msg-Id")
    occurred_at: AwareDatetime = Field(description="When it happened, UTC")
    whistle_id: UUID = Field(description="The whistle this event belongs to")
    correlation_id: UUID | None = Field(default=None, description="Always the whistle id")
    causation_id: UUID | None = Field(default=None, description="The event or request that caused it")
    actor: str = Field(description="Who caused it: 'dispatcher:…', 'responder:…', 'system:…'")

    @model_validator(mode="after")
    def _correlate(self) -> Event:
        if self.correlation_id is None:
            object.__setattr__(self, "correlation_id", self.whistle_id)
        elif self.correlation_id != self.whistle_id:
            raise ValueError("correlation_id must be the whistle id")
        return self

    @property
    def subject(self) -> str:
        """The event's type: `<family>.<verb>`."""
        return self.SUBJECT

    @property
    def published_subject(self) -> str:
        """What it is published on: its type, then its whistle (the stream puts the whistle's partition
        between the two, shared/partitions.py)."""
        return f"{self.SUBJECT}.{self.whistle_id}"


# --- intake -------------------------------------------------------------------


class WhistleBlown(Event):
    """吹哨: the community raised a problem."""

    SUBJECT: ClassVar[str] = "whistle.blown"
    category: str
    description: str
    location: Location
    tier: Tier
    source: Source
    reporter: Reporter | None = None
    attachments: list[str] = Field(default_factory=list, description="Photo or document URLs")


class WhistleGrouped(Event):
    """一个诉求解决一类问题: the whistle joined a problem class (same category, same building or grid, recent)."""

    SUBJECT: ClassVar[str] = "whistle.grouped"
    class_id: UUID = Field(description="The problem class the whistle joined")
    size: int = Field(ge=1, description="Members of the class, this whistle included")
    first_seen: AwareDatetime = Field(description="When the class's first whistle was blown")
    last_seen: AwareDatetime = Field(description="When its latest whistle was blown")


class WhistleReporterErased(Event):
    """The reporter's personal data was erased on their request (个人信息删除): every service holding any of it
    removes it when it takes this event. It names who erased it (`actor`), when, and why; never the person."""

    SUBJECT: ClassVar[str] = "whistle.reporter_erased"
    reason: str = Field(max_length=1000, description="Why, as the supervisor gave it (names, phones masked)")


# --- routing ------------------------------------------------------------------


class WhistleRouted(Event):
    """Routing placed the whistle: which rule matched and who leads."""

    SUBJECT: ClassVar[str] = "whistle.routed"
    rule: str
    lead_responder_id: str
    co_responder_ids: list[str] = Field(default_factory=list, description="Co-handlers of a joint whistle")


class WhistleUnroutable(Event):
    """No rule could place the whistle; it waits on the supervisor's queue."""

    SUBJECT: ClassVar[str] = "whistle.unroutable"
    reason: str


class SummonsIssued(Event):
    """A responder is summoned to report on a whistle."""

    SUBJECT: ClassVar[str] = "summons.issued"
    summons_id: UUID
    responder_id: str
    responder_kind: ResponderKind
    responder_name: str
    superior_id: str | None = None
    role: Literal["lead", "co"] = "lead"
    category: str
    tier: Tier
    arbitrated: bool = Field(default=False, description="Chosen by a supervisor (审定): cannot be returned")
    replaces: UUID | None = Field(default=None, description="The returned or transferred summons this replaces")


class WhistleArbitrationNeeded(Event):
    """Returned twice: a supervisor must decide who handles it (审定)."""

    SUBJECT: ClassVar[str] = "whistle.arbitration_needed"
    returned_by: list[str]


class WhistleArbitrated(Event):
    """A supervisor chose the responder; that summons cannot be returned."""

    SUBJECT: ClassVar[str] = "whistle.arbitrated"
    responder_id: str
    note: str | None = None


# --- response -----------------------------------------------------------------


class _SummonsEvent(Event):
    summons_id: UUID
    responder_id: str
    note: str | None = None


class SummonsReported(_SummonsEvent):
    """报到: the responder acknowledged the summons."""

    SUBJECT: ClassVar[str] = "summons.reported"


class SummonsOnSite(_SummonsEvent):
    """The responder arrived on site."""

    SUBJECT: ClassVar[str] = "summons.on_site"


class SummonsResolved(_SummonsEvent):
    """The responder resolved the problem."""

    SUBJECT: ClassVar[str] = "summons.resolved"

    photo_url: str | None = Field(default=None, description="A photo of the fix, when the responder gave one")


ReturnReason = Literal["wrong_area", "unclear_ownership", "overlapping_duty", "not_our_duty", "other"]


class SummonsReturned(_SummonsEvent):
    """退单: the responder gives the summons back with a reason; routing summons someone else."""

    SUBJECT: ClassVar[str] = "summons.returned"
    role: Literal["lead", "co"] = "lead"
    reason_code: ReturnReason
    reason: str | None = None


class SummonsTransferred(_SummonsEvent):
    """转派: the responder hands the summons to a named responder, with a reason."""

    SUBJECT: ClassVar[str] = "summons.transferred"
    role: Literal["lead", "co"] = "lead"
    to_responder_id: str
    reason: str


class SummonsPaused(_SummonsEvent):
    """The summons waits on the resident (or on a supervisor's decision); its clocks hold."""

    SUBJECT: ClassVar[str] = "summons.paused"
    reason: Literal["waiting_on_resident", "extension_pending"] = "waiting_on_resident"


class SummonsResumed(_SummonsEvent):
    """The wait is over; the clocks run again with the time they had left."""

    SUBJECT: ClassVar[str] = "summons.resumed"


class ExtensionRequested(_SummonsEvent):
    """延期: the responder asks for more time on one of its deadlines."""

    SUBJECT: ClassVar[str] = "summons.extension_requested"
    clock: Literal["report", "on_site", "resolve"] = "resolve"
    new_deadline: AwareDatetime
    reason: str


class ExtensionGranted(_SummonsEvent):
    """A supervisor granted the extension: the deadline moves."""

    SUBJECT: ClassVar[str] = "summons.extension_granted"
    clock: Literal["report", "on_site", "resolve"] = "resolve"
    new_deadline: AwareDatetime


class ExtensionRefused(_SummonsEvent):
    """A supervisor refused the extension: the old deadline stands."""

    SUBJECT: ClassVar[str] = "summons.extension_refused"
    clock: Literal["report", "on_site", "resolve"] = "resolve"


class WhistleVerified(Event):
    """The community checked the fix."""

    SUBJECT: ClassVar[str] = "whistle.verified"
    note: str | None = None
    photo_url: str | None = None


class WhistleClosed(Event):
    """挂账销号: struck off the ledger."""

    SUBJECT: ClassVar[str] = "whistle.closed"


class WhistleReopened(Event):
    """重办: the follow-up found it not solved or the resident dissatisfied; the lead is summoned again."""

    SUBJECT: ClassVar[str] = "whistle.reopened"
    lead_responder_id: str
    reason: str


class WhistleFollowedUp(Event):
    """回访: the resident says whether it is solved and how satisfied they are."""

    SUBJECT: ClassVar[str] = "whistle.followed_up"
    solved: bool
    satisfaction: Literal["satisfied", "basically_satisfied", "dissatisfied"]
    note: str | None = None


# --- escalation ---------------------------------------------------------------


ClockKind = Literal["report", "on_site", "resolve"]


class SlaStarted(Event):
    """The summons' clocks started, with the policy snapshotted: its deadlines."""

    SUBJECT: ClassVar[str] = "sla.started"
    summons_id: UUID
    responder_id: str
    basis: Literal["wall", "working"]
    deadlines: dict[ClockKind, datetime]


class SlaRescheduled(Event):
    """A clock paused (deadline None), resumed, or was extended (a new deadline)."""

    SUBJECT: ClassVar[str] = "sla.rescheduled"
    summons_id: UUID
    clock: ClockKind
    deadline: datetime | None
    reason: str


class SlaWarned(Event):
    """The warning point of a clock passed (e.g. 80% of the time used)."""

    SUBJECT: ClassVar[str] = "sla.warned"
    summons_id: UUID
    responder_id: str
    clock: ClockKind
    deadline: datetime


class SlaBreached(Event):
    """A clock ran out before the responder answered."""

    SUBJECT: ClassVar[str] = "sla.breached"
    summons_id: UUID
    responder_id: str
    clock: ClockKind
    deadline: datetime


class EscalationRaised(Event):
    """One step of the 三呼三应 ladder."""

    SUBJECT: ClassVar[str] = "escalation.raised"
    summons_id: UUID
    clock: ClockKind = "report"
    step: int = Field(ge=1, description="1-based step of the ladder, counting repeats")
    round: int = Field(default=1, ge=1, description="Which pass through the ladder")
    level: Literal["responder", "superior", "street_command", "district"]
    target_id: str
    reason: str


# --- notifier -----------------------------------------------------------------


class _NotificationAttempt(Event):
    notification_id: UUID = Field(description="Also the message id every attempt carries (webhook-id, OutId,"
                                  " Message-ID): a receiver drops a repeat by it")
    summons_id: UUID | None = None
    kind: str = Field(description="The event that caused it, e.g. summons.issued")
    recipient_id: str = Field(description="A responder id, a desk ('community', 'street-command-centre') or 'resident'")
    step: str = Field(description="Step of the recipient's contact rule; 3.1: the superior's first, from step 3")
    channel: Literal["webhook", "wecom", "dingtalk", "email", "sms"]
    address: str | None = Field(default=None, description="Masked: 138****1234, z***@example.org, a URL's host")
    attempt: int = Field(ge=1)
    status: int | None = Field(default=None, description="The channel's HTTP status or SMTP code")
    answer: str | None = Field(default=None, max_length=300, description="The channel's own words, cut short")


class NotificationSent(_NotificationAttempt):
    """An attempt the channel accepted: the notification is delivered."""

    SUBJECT: ClassVar[str] = "notification.sent"


class NotificationFailed(_NotificationAttempt):
    """An attempt that did not go through: tried again at `retry_at`, or `final` (4xx, or attempts spent)."""

    SUBJECT: ClassVar[str] = "notification.failed"
    final: bool
    retry_at: AwareDatetime | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.SUBJECT: cls
    for cls in (
        WhistleBlown,
        WhistleGrouped,
        WhistleReporterErased,
        WhistleRouted,
        WhistleUnroutable,
        SummonsIssued,
        SummonsReported,
        SummonsOnSite,
        SummonsResolved,
        SummonsReturned,
        SummonsTransferred,
        SummonsPaused,
        SummonsResumed,
        ExtensionRequested,
        ExtensionGranted,
        ExtensionRefused,
        WhistleVerified,
        WhistleClosed,
        WhistleFollowedUp,
        WhistleReopened,
        WhistleArbitrationNeeded,
        WhistleArbitrated,
        SlaStarted,
        SlaRescheduled,
        SlaWarned,
        SlaBreached,
        EscalationRaised,
        NotificationSent,
        NotificationFailed,
    )
}


class UnknownSubject(ValueError):
    """A message arrived on a subject no contract describes."""


def parse_event(subject: str, data: bytes | str) -> Event:
    """Parse a message body by its subject (its first two tokens are the type: a stored subject goes on
    with its partition and whistle); raises ValidationError or UnknownSubject."""
    cls = EVENT_TYPES.get(".".join(subject.split(".", 2)[:2]))
    if cls is None:
        raise UnknownSubject(f"no contract for subject {subject!r}")
    event = cls.model_validate_json(data)
    named = subject.split(".")[2:]
    if named and named[-1] != str(event.whistle_id):  # it would sit in another whistle's partition
        raise UnknownSubject(f"subject {subject!r} names another whistle than {event.whistle_id}")
    return event


# --- request / reply between the gateway and the services ----------------------


class Refusal(BaseModel):
    """Why a command was refused; maps onto an HTTP status at the gateway."""

    status: int = Field(description="401, 403, 404, 409 or 422")
    code: str = Field(description="Machine-readable reason code")
    reason: str = Field(description="Human-readable reason, English / 中文")
    field: str | None = Field(default=None, description="The offending field, if any")


class Reply(BaseModel):
    """Every request/reply answer: data on success, a refusal otherwise."""

    ok: bool
    data: Any = None
    refusal: Refusal | None = None

    @classmethod
    def success(cls, data: Any = None) -> Reply:
        return cls(ok=True, data=data)

    @classmethod
    def refuse(cls, status: int, code: str, reason: str, field: str | None = None) -> Reply:
        return cls(ok=False, refusal=Refusal(status=status, code=code, reason=reason, field=field))


Role = Literal["dispatcher", "supervisor", "responder", "resident", "system"]


class Actor(BaseModel):
    """The authenticated caller, as the gateway forwards it."""

    role: Role
    id: str

    def __str__(self) -> str:
        return f"{self.role}:{self.id}"


P = TypeVar("P")


class Command(BaseModel, Generic[P]):
    """A request from the gateway to the owning service; the owner's runtime types its payload with the
    model its `Request` declares before the handler sees it."""

    model_config = ConfigDict(extra="forbid")
    actor: Actor
    request_id: UUID = Field(default_factory=uuid7)
    payload: P = Field(default_factory=dict)  # type: ignore[assignment]
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=128,
        description="The client's Idempotency-Key: a command retried with it gets its first result back",
    )
    expires_at: datetime | None = Field(
        default=None, description="When the gateway stops waiting: a command taken later is not carried out",
    )
    signer: str | None = Field(default=None, description="Who signed it: the gateway, or a service asking as the system")
    signature: str | None = Field(
        default=None, description="HMAC-SHA256 over the subject and every other field but these two (shared/signing.py);"
        " an owner refuses a command without a valid one (401)",
    )
