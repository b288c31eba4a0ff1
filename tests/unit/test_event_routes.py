"""One consumer for several subjects (shared/runtime/routes.py): each event to its route's handler, in
stream order, a run of one route at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from shared.contracts import SummonsReported, SummonsResolved, WhistleBlown, WhistleClosed, WhistleGrouped
from shared.runtime import EventRoutes
from shared.runtime.routes import subject_matches
from shared.streams import consumer_config


def blown() -> WhistleBlown:
    return WhistleBlown.model_construct()  # only its type matters here


def closed() -> WhistleClosed:
    return WhistleClosed.model_construct()


def resolved() -> SummonsResolved:
    return SummonsResolved.model_construct()


def reported() -> SummonsReported:
    return SummonsReported.model_construct()


@pytest.mark.parametrize(("pattern", "subject", "matches"), [
    ("whistle.blown", "whistle.blown", True),
    ("whistle.>", "whistle.blown", True),
    ("whistle.>", "whistle", False),
    ("whistle.*", "whistle.blown", True),
    ("whistle.*", "whistle.blown.3", False),
    ("summons.>", "whistle.blown", False),
    ("whistle.blown", "whistle.closed", False),
])
def test_subjects_match_as_nats_matches_them(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


def test_each_route_takes_its_events_of_the_batch_in_stream_order_the_routes_in_declared_order() -> None:
    calls: list[tuple[str, list[str]]] = []

    def recorder(name: str, batch: bool):
        async def handle(conn, events, now):
            calls.append((name, [type(e).__name__ for e in (events if batch else [events])]))
            return [name]
        return handle

    routes = (EventRoutes().batch(WhistleBlown.SUBJECT, recorder("blown", True))
              .each("summons.>", recorder("summons", False))
              .batch("whistle.>", recorder("whistle", True)))
    assert routes.subjects == ["whistle.blown", "summons.>", "whistle.>"]
    first, second, third = blown(), blown(), blown()
    events = [closed(), first, second, resolved(), reported(), third]
    seen: list = []
    routes.routes[0] = ((WhistleBlown.SUBJECT,), _keeping(seen, routes.routes[0][1]), True)
    emitted = asyncio.run(routes(None, events, datetime.now(UTC)))
    assert calls == [("blown", ["WhistleBlown"] * 3), ("summons", ["SummonsResolved"]),
                     ("summons", ["SummonsReported"]), ("whistle", ["WhistleClosed"])]
    assert seen == [[first, second, third]]  # the very events, in stream order
    assert emitted == ["blown", "summons", "summons", "whistle"]


def _keeping(seen: list, handle):
    async def keep(conn, events, now):
        seen.append(events)
        return await handle(conn, events, now)
    return keep


def test_a_route_of_several_subjects_takes_their_events_together_and_the_consumer_filters_on_each() -> None:
    calls: list[list[str]] = []

    async def handle(conn, events, now):
        calls.append([type(e).__name__ for e in events])
        return []

    routes = (EventRoutes().batch((WhistleBlown.SUBJECT, WhistleClosed.SUBJECT), handle)
              .batch("summons.>", lambda *_: _nothing()))
    assert routes.subjects == ["whistle.blown", "whistle.closed", "summons.>"]
    asyncio.run(routes(None, [closed(), resolved(), blown(), closed()], datetime.now(UTC)))
    assert calls == [["WhistleClosed", "WhistleBlown", "WhistleClosed"]]  # one call, in stream order
    with pytest.raises(LookupError, match="whistle.grouped"):  # not taken: the consumer does not fetch it
        routes.index_of(WhistleGrouped.model_construct())


async def _nothing() -> list:
    return []


def test_an_event_of_no_route_is_an_error_not_a_silent_skip() -> None:
    routes = EventRoutes().batch(WhistleClosed.SUBJECT, lambda *_: None)
    with pytest.raises(LookupError, match="summons.resolved"):
        asyncio.run(routes(None, [resolved()], datetime.now(UTC)))


def test_a_consumer_of_several_subjects_filters_on_all_of_them() -> None:
    one = consumer_config("d", max_deliver=5, ack_wait_s=30, filters=("whistle.blown.3.*",))
    assert (one.filter_subject, one.filter_subjects) == ("whistle.blown.3.*", None)
    many = consumer_config("d", max_deliver=5, ack_wait_s=30, filters=("whistle.blown.3.*", "summons.*.3.*"))
    assert (many.filter_subject, many.filter_subjects) == (None, ["whistle.blown.3.*", "summons.*.3.*"])
    assert consumer_config("d", max_deliver=5, ack_wait_s=30).filter_subject is None
