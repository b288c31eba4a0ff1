"""Keyset pages of the list queries: the cursor round-trips, a bad one is a 422 naming it, and a page of the
largest rows any list holds still fits in one NATS message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from pydantic_core import to_json

from shared import paging
from shared.commands import MAX_DESCRIPTION
from shared.contracts import Reply

NATS_MAX_PAYLOAD = 1024 * 1024
AT = datetime(2026, 11, 29, 21, 6, 17, 572569, tzinfo=UTC)
ID = UUID("01a22921-4b7f-711a-b21b-df11d9e0ba00")


def test_a_cursor_gives_back_the_sort_key_it_was_made_from() -> None:
    cursor = paging.encode((AT.isoformat(), str(ID)))
    assert cursor.isascii() and "=" not in cursor and len(cursor) <= paging.MAX_CURSOR
    assert paging.decode(cursor, paging.aware, paging.uuid) == (AT, ID)
    assert paging.decode(paging.encode([None, str(ID)]), paging.aware_or_none, paging.uuid) == (None, ID)
    assert paging.decode(paging.encode(["d-housing"]), paging.text) == ("d-housing",)


@pytest.mark.parametrize("cursor", [
    "", "not a cursor!", "x" * 600, "²", paging.encode(["2026-11-29T21:06:17"]),  # no zone
    paging.encode([AT.isoformat()]), paging.encode([AT.isoformat(), "not-a-uuid"]), paging.encode({"a": 1}),
    paging.encode([1, 2]), "WyJub3QgYSBrZXkiXQ", "[" * 300, paging.encode([[[[[]]]], str(ID)]),
])
def test_a_cursor_no_list_handed_out_is_a_bad_cursor(cursor: str) -> None:
    with pytest.raises(paging.BadCursor):
        paging.decode(cursor, paging.aware, paging.uuid)


@pytest.mark.parametrize(("payload", "field"), [
    ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"limit": "5"}, "limit"), ({"limit": True}, "limit"),
    ({"limit": 10**30}, "limit"), ({"cursor": "nope"}, "cursor"), ({"cursor": 7}, "cursor"),
])
def test_a_bad_limit_or_cursor_is_a_422_naming_it(payload: dict, field: str) -> None:
    asked = paging.window(payload, 100, paging.aware, paging.uuid)
    assert isinstance(asked, Reply) and asked.refusal.status == 422 and asked.refusal.field == field


def test_the_window_is_the_limit_and_the_key_after_which_the_page_starts() -> None:
    assert paging.window({}, 100, paging.text) == (100, None)
    assert paging.window({"limit": 7, "cursor": paging.encode(["m-1"])}, 100, paging.text) == (7, ("m-1",))


def rows(n: int, start: datetime = AT, **extra) -> list[dict]:
    return [{"id": str(UUID(int=n - i)), "at": (start - timedelta(seconds=i)).isoformat(), **extra} for i in range(n)]


def test_a_page_is_the_limit_and_the_cursor_of_the_row_after_it() -> None:
    fetched = rows(6)  # limit + 1 fetched
    page = paging.page(fetched, 5, lambda r: (r["at"], r["id"]))
    assert page["items"] == fetched[:5]
    assert paging.decode(page["next_cursor"], paging.aware, paging.uuid) == (
        datetime.fromisoformat(fetched[4]["at"]), UUID(fetched[4]["id"]))
    last = paging.page(fetched[:5], 5, lambda r: (r["at"], r["id"]))
    assert last == {"items": fetched[:5], "next_cursor": None}
    assert paging.page([], 5, lambda r: (r["at"], r["id"])) == {"items": [], "next_cursor": None}


def test_a_page_of_the_largest_rows_stops_under_max_payload_and_says_where_to_go_on() -> None:
    """The largest row of any list: an Open311 request with a 2,000-character description, a 200-character
    address, five 500-character URLs (each character escaped six times over in the worst case)."""
    biggest = {"description": "\x01" * MAX_DESCRIPTION, "location": {"address": "\x01" * 200, "building": "7"},
               "attachments": ["https://x/" + "\x01" * 490] * 5, "lead_responder_name": "\x01" * 200}
    fetched = rows(1001, **biggest)
    page = paging.page(fetched, 1000, lambda r: (r["at"], r["id"]))
    reply = Reply.success(page).model_dump(mode="json")
    assert len(to_json(reply)) <= paging.PAGE_BYTES + 1024 < NATS_MAX_PAYLOAD
    assert 0 < len(page["items"]) < 1000 and page["next_cursor"] is not None
    one = to_json(fetched[0])
    assert len(one) < paging.PAGE_BYTES // 10  # a row alone is far from the cap: a page always holds one


def test_walking_the_pages_gives_every_row_once_in_order() -> None:
    everything = rows(57)

    def fetch(limit: int, after: tuple | None) -> list[dict]:  # the owner's keyset query, in memory
        return [r for r in everything if after is None or (r["at"], r["id"]) < after][:limit]

    seen, cursor = [], None
    while True:
        after = paging.decode(cursor, paging.text, paging.text) if cursor else None
        page = paging.page(fetch(11, after), 10, lambda r: (r["at"], r["id"]))
        seen += page["items"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == everything
