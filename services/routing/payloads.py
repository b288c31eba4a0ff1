"""What routing's requests take, besides the bodies the gateway already checks with shared/commands.py's models
(ResponderIn, PasswordSet, Arbitration, SigninLinkAsk): the runtime validates each payload before the handler
runs (422 naming the field), and routing's AsyncAPI document shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from shared import paging
from shared.commands import Arbitration, ResponderIn
from shared.contracts import ResponderKind

ID_MAX = 64
TOKEN_MAX = 128  # characters: a sign-in link's token is 43; anything longer is not ours


class ResponderRef(BaseModel):
    """One responder of the registry, by id."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=ID_MAX, description="The responder's id, e.g. 'd-housing'")


class WhistleRef(BaseModel):
    """One whistle, by id (an id that is no UUID names no whistle: 404, not 422)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=ID_MAX, description="The whistle's id (a UUID)")


class Known(BaseModel):
    """An id that may name a registry responder (active or not) or whom a console account acts as."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=ID_MAX, description="A responder's id, or an account's subject id")


class Page(BaseModel):
    """One page of a list: how many rows at most, and where it starts."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=paging.MAX_LIMIT, strict=True, description="Rows a page, at most")
    cursor: str | None = Field(default=None, min_length=1, max_length=paging.MAX_CURSOR,
                               description="Where the page starts: the next_cursor of the page before")


class ResponderFilter(Page):
    """The registry's responders by id, filtered by kind, branch or building (`GET /v1/responders`)."""

    kind: ResponderKind | None = Field(default=None, description="Only responders of this kind")
    branch: str | None = Field(default=None, max_length=16, description="Only members of this party branch")
    building: str | None = Field(default=None, max_length=16, description="Only those of this building")
    offset: int = Field(default=0, ge=0, le=1_000_000, strict=True, description="Rows skipped after the cursor")


class AccountFilter(Page):
    """The console accounts by user name, filtered (the people page; the notifier by `id`)."""

    id: str | None = Field(default=None, max_length=ID_MAX, description="Only the accounts acting as this id")
    q: str | None = Field(default=None, max_length=ID_MAX, description="Part of a user name or of whom it acts as")
    role: Literal["dispatcher", "supervisor", "responder"] | None = Field(default=None, description="Only this role")
    username: str | None = Field(default=None, max_length=ID_MAX, description="Only this user name (any case)")


class ResponderPut(ResponderIn):
    """`PUT /v1/responders/{id}`: the responder as a supervisor writes it, with its id."""

    id: str = Field(min_length=1, max_length=ID_MAX, description="Letters, digits, '-' and '_'")

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, v: object) -> object:
        # before stripping (no space passes): the gateway mints a new responder's token for the id as given
        if isinstance(v, str) and not v.replace("-", "").replace("_", "").isalnum():
            raise PydanticCustomError("bad_id", "ids are letters, digits, '-' and '_' / 编号格式不对")
        return v


class ArbitrateWhistle(Arbitration):
    """审定 (`POST /v1/whistles/{id}/arbitrate`): who handles a twice-returned whistle, and the whistle."""

    whistle_id: str = Field(min_length=1, max_length=ID_MAX, description="The whistle (a UUID; any other: 404)")


class PlaceAsk(BaseModel):
    """A bare WGS 84 point (an Open311 request's lat/long) to place at a building of the community."""

    model_config = ConfigDict(extra="forbid")
    lat: float = Field(ge=-90, le=90, strict=True, allow_inf_nan=False, description="Latitude, decimal degrees")
    long: float = Field(ge=-180, le=180, strict=True, allow_inf_nan=False, description="Longitude, decimal degrees")


class SignIn(BaseModel):
    """A console sign-in to check (the console asks, as system:console)."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=ID_MAX, description="As typed; matched in any case")
    password: str = Field(min_length=1, max_length=128)


class SigninLinkUse(BaseModel):
    """A one-time sign-in link's token, to spend (the console asks, as system:console)."""

    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=TOKEN_MAX, description="The token of the link, as opened")


class TokenRevoke(BaseModel):
    """One bearer token to revoke, as the gateway read it from the token (`POST /v1/tokens/revoke`):
    its id, whom it names and when it expires (the token itself never leaves the gateway)."""

    model_config = ConfigDict(extra="forbid")
    jti: str = Field(min_length=1, max_length=ID_MAX, description="The token's own id")
    role: Literal["dispatcher", "supervisor", "responder"] = Field(description="The role the token names")
    subject_id: str = Field(min_length=1, max_length=512, description="The id the token names")
    expires_at: AwareDatetime = Field(description="When the token expires: it is forgotten after that")
