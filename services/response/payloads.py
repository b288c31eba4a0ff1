"""What response's requests carry, besides the shapes shared with the gateway in shared/commands.py
(SummonsAction, ExtensionRequest, ExtensionDecision, VerifyWhistle, FollowUp). The gateway and the CLI
build these same models, so a payload the owner would refuse is refused before it is sent."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared import paging
from shared.commands import FollowUp


class FollowUpAnswer(FollowUp):
    """回访: the resident's answer, for one whistle. A dispatcher names the whistle (`whistle_id`, from a phone
    call); a resident's one-time link is its own credential and names it (`token`). One answer per closure."""

    whistle_id: str | None = Field(default=None, min_length=1, max_length=64,
                                   description="The whistle (dispatchers)")
    token: str | None = Field(default=None, min_length=8, max_length=64,
                              description="The one-time token of the resident's follow-up link (residents)")


class SummonsPage(BaseModel):
    """A page of the caller's summons, newest first: a responder's own, everyone's for dispatchers and supervisors."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=paging.MAX_LIMIT, description="Rows a page, at most")
    cursor: str | None = Field(default=None, min_length=1, max_length=paging.MAX_CURSOR,
                               description="The `next_cursor` of the page before; none for the first page")


class FollowUpLink(BaseModel):
    """A resident's follow-up link, by its token: what it is about and whether it can still be answered."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    token: str = Field(min_length=8, max_length=64, description="The one-time token of the link (/r/{token})")


class WhistleFollowUpLink(BaseModel):
    """The open follow-up link of a whistle, for the notifier to text the resident."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    whistle_id: str = Field(min_length=1, max_length=64, description="The whistle verified")
