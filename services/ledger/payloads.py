"""What the ledger's requests take: the gateway builds them, the runtime validates them (422 naming the
field) before a handler runs, and the AsyncAPI document shows them."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.ledger.rates import COMMUNITY
from shared import paging
from shared.paging import Page

WhistleStatus = Literal["open", "dispatched", "resolved", "verified", "closed", "unroutable", "awaiting_arbitration",
                        "reopened"]
BoardState = Literal["issued", "reported", "on_site", "warned", "breached", "paused"]


class WhistleRef(BaseModel):
    """One whistle, with its summons and timeline; an id that is no whistle's is 404."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64, description="The whistle's id")


class WhistleList(Page):
    """The ledger of whistles, newest first: those not struck off, or those of one status."""

    status: WhistleStatus | None = Field(default=None, description="Only whistles of this status; all but closed"
                                         " ones when left out")


class DeadLetterList(Page):
    """Dead-lettered messages, newest first."""

    replayed: bool | None = Field(default=None, description="true: replayed at least once; false: never")


class DeadLetterRef(BaseModel):
    """One dead letter; anything but a known dead letter's number is 404."""

    model_config = ConfigDict(extra="forbid")
    id: int | Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="The dead letter's number (digits in a path segment are read as one)")


class PeriodAsk(BaseModel):
    """A period of Beijing calendar dates: `month`, or `from` and `to` (exclusive); the ledger checks the
    combination and that the dates exist, naming the field (422 bad_period)."""

    model_config = ConfigDict(extra="forbid")
    month: str | None = Field(default=None, max_length=16, description="YYYY-MM", examples=["2026-11"])
    from_: str | None = Field(default=None, alias="from", max_length=32, description="YYYY-MM-DD, the first day")
    to: str | None = Field(default=None, max_length=32, description="YYYY-MM-DD, the day after the last")


class RatesAsk(PeriodAsk):
    """The three rates (三率) of one responder, or of the whole community, over a period."""

    unit: str = Field(default=COMMUNITY, min_length=1, max_length=64,
                      description="A responder id, or 'community'; a responder may ask only for its own")


class Open311Query(Page):
    """Whistles for the Open311 GeoReport edge: by ids, or by categories, [start, end) and open / closed."""

    ids: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=paging.MAX_LIMIT, description="service_request_id values; they override the rest")
    categories: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=200, description="service_code values")
    start: str | None = Field(default=None, max_length=64, description="ISO 8601 with a time zone, inclusive")
    end: str | None = Field(default=None, max_length=64, description="ISO 8601 with a time zone, exclusive")
    status: str | None = Field(default=None, max_length=16, description="open or closed")


class BoardAsk(Page):
    """The SLA board: open summons with their clocks, filtered; a responder gets only its own."""

    tier: Literal["routine", "urgent", "complex"] | None = None
    category: str | None = Field(default=None, min_length=1, max_length=64)
    unit: str | None = Field(default=None, min_length=1, max_length=64, description="A responder id")
    state: BoardState | None = Field(default=None, description="A summons state, or warned / breached / paused")
    buildings: list[Annotated[str, Field(max_length=16)]] | None = Field(default=None, max_length=100)
    whistle_ids: list[UUID] | None = Field(default=None, max_length=1000,
                                           description="Only these whistles' summons (the console's live board)")


class InboxAsk(Page):
    """The supervisors' inbox: its counts, or the pending extension requests (延期申请) a page at a time."""

    counts: bool = Field(default=False, description="true: what waits in each part, counted")


class AuditAsk(Page):
    """The audit of a month (Beijing calendar): every event of the timeline, oldest first, with who caused it."""

    month: str = Field(max_length=16, description="YYYY-MM", examples=["2026-11"])
    system: bool = Field(default=False, description="true: what the services did too (routing, clocks,"
                         " notifications); false: what people did")
