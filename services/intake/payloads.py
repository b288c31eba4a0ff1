"""What intake's requests take: the gateway builds them, the runtime validates them (422 naming the field) before a handler runs, and the
AsyncAPI document shows them."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.commands import RaiseWhistle, ReporterIn  # noqa: F401 (RaiseWhistle's annotations, resolved here)
from shared.paging import Page
from shared.validation import text_fields

MAX_IMPORT_ROWS = 1000  # per request: a NATS message stays under its 1 MB limit; the CLI sends chunks
CLIENT = r"^[A-Za-z0-9._-]{1,64}$"


class BlowWhistle(RaiseWhistle):
    """吹哨 as intake takes it: the whistle as raised, the Idempotency-Key it came with, and the answers to
    its category's questions (Open311 attributes: code → values), checked against the catalogue."""

    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    attributes: dict[str, list[str]] | None = None


class ImportBatch(BaseModel):
    """接诉即办: 12345 work orders (order_id, received_at, category_text, address, description, caller_phone,
    deadline_class); each row is checked on its own, and its errors reported by row number."""

    model_config = ConfigDict(extra="forbid")
    rows: list[dict] = Field(min_length=1, max_length=MAX_IMPORT_ROWS, description="The work orders, as read")
    partial: bool = Field(default=False, description="Import the good rows even if some are invalid")
    dry_run: bool = Field(default=False, description="Check only; import nothing")
    first_row: int = Field(default=1, ge=1, description="Row number of the first row, for error reports")


class ClassList(Page):
    """Problem classes (一个诉求解决一类问题), first seen first."""

    status: Literal["open", "raised"] | None = Field(default=None, description="raised: its proactive whistle"
                                                     " is raised")
    category: str | None = Field(default=None, max_length=64)
    building: str | None = Field(default=None, max_length=16)


class ApiKeyIssue(BaseModel):
    """An API key for an Open311 client, shown once; only its hash is kept."""

    model_config = ConfigDict(extra="forbid")
    client: str = Field(pattern=CLIENT, description="Who gets the key: 1–64 letters, digits, '.', '_' or '-'")
    note: str | None = Field(default=None, max_length=1000)


class ApiKeyRevoke(BaseModel):
    """Every active key of an Open311 client; a client with none is 404."""

    model_config = ConfigDict(extra="forbid")
    client: str = Field(max_length=64)


class ApiKeyCheck(BaseModel):
    """The client an Open311 API key was issued to; a key that is no key is 403."""

    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(max_length=1000)


class ReporterContactAsk(BaseModel):
    """The whole phone of a whistle's reporter, for the notifier to text the follow-up link."""

    model_config = ConfigDict(extra="forbid")
    whistle_id: UUID


class ReporterErase(BaseModel):
    """Erase a whistle's reporter's personal data on their request (个人信息删除): intake forgets it and tells
    every other service holding any of it (whistle.reporter_erased); the timeline keeps who, when and why."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    whistle_id: UUID
    reason: str = Field(min_length=1, max_length=1000, description="Why: the request it answers (its reference)")

    _texts = text_fields("reason")
