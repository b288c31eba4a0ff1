"""Keyset pages for list queries: a bounded limit, an opaque cursor, and a reply that fits in one NATS message.

A list query's owner fetches `limit + 1` rows after the cursor's sort key, in a stable order, and
answers `page(...)`: `{"items": [...], "next_cursor": str | None}`. The gateway hands the cursor back
to the client untouched (`Link: rel="next"`, `X-Next-Cursor`), so only the owner reads it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from shared.contracts import Reply

MAX_LIMIT = 1000
MAX_CURSOR = 512  # characters; a cursor holds one row's sort key
# a page's rows stop here, well under NATS's default max_payload (1 MiB): the reply's envelope is
# a few dozen bytes, and one row of any list is at most tens of KiB (its fields are bounded at input)
PAGE_BYTES = 768 * 1024


class BadCursor(ValueError):
    """A cursor no list query handed out."""


def encode(key: Sequence[Any]) -> str:
    """The opaque cursor after a row: its sort key as URL-safe base64 of JSON."""
    raw = json.dumps(list(key), separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(cursor: str, *parsers: Callable[[Any], Any]) -> tuple:
    """The sort key a cursor stands for, each part through its parser; BadCursor for anything else."""
    try:
        if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR or not cursor.isascii():
            raise ValueError("not a cursor")
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(key, list) or len(key) != len(parsers):
            raise ValueError("not a sort key")
        return tuple(parse(value) for parse, value in zip(parsers, key, strict=True))
    except (ValueError, TypeError, AttributeError, binascii.Error, RecursionError) as exc:
        raise BadCursor(str(exc)) from exc


def aware(value: Any) -> datetime:
    """An ISO 8601 time with its zone (what `datetime.isoformat` wrote)."""
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise ValueError("a cursor's time has a zone")
    return at


def aware_or_none(value: Any) -> datetime | None:
    """A time as `aware`, or None (a row whose time is not known yet)."""
    return None if value is None else aware(value)


def uuid(value: Any) -> UUID:
    return UUID(value)


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a cursor's text is a string")
    return value


def window(payload: dict, default: int, *parsers: Callable[[Any], Any]) -> tuple[int, tuple | None] | Reply:
    """The limit and the cursor's sort key (None: the first page) a list query asks for, or the 422."""
    limit = payload.get("limit")
    if limit is None:
        limit = default
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        return Reply.refuse(422, "invalid", f"limit: 1–{MAX_LIMIT} / 数量须为 1–{MAX_LIMIT}", "limit")
    cursor = payload.get("cursor")
    if cursor is None:
        return limit, None
    try:
        return limit, decode(cursor, *parsers)
    except BadCursor:
        return Reply.refuse(422, "bad_cursor", "cursor: not one this list handed out; start again without it"
                            " / 游标无效，请不带游标重新查询", "cursor")


def page(rows: list[dict], limit: int, key: Callable[[dict], Sequence[Any]]) -> dict:
    """Up to `limit` of `rows` (fetched: limit + 1) and at most PAGE_BYTES of JSON, with the next page's cursor."""
    items: list[dict] = []
    size = 0
    for row in rows[:limit]:
        size += len(to_json(row)) + 1
        if items and size > PAGE_BYTES:
            break
        items.append(row)
    more = len(items) < len(rows)
    return {"items": items, "next_cursor": encode(key(items[-1])) if more else None}


class Page(BaseModel):
    """A page of a list: how many rows at most, and where the page before ended."""

    model_config = ConfigDict(extra="forbid")
    limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT,
                              description="Rows a page, at most; the list's own default when left out")
    cursor: str | None = Field(default=None, min_length=1, max_length=MAX_CURSOR,
                               description="Where the page starts: the next_cursor of the page before")

    @property
    def page(self) -> dict:
        """The limit and cursor as `paging.window` reads them (its 422s name the field, bad_cursor included)."""
        return {"limit": self.limit, "cursor": self.cursor}
