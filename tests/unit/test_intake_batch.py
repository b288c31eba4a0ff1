"""Blow requests in batches: each checked alone, then a batch's Idempotency-Keys settled in arrival order."""

from __future__ import annotations

from datetime import UTC, datetime

from services.intake.app import build
from services.intake.blows import Blow, Seen, check, first_uses, settle
from services.intake.domain import load_catalogue
from shared import subjects
from shared.contracts import Actor, Command, Reply
from shared.ids import uuid7
from shared.runtime.requests import typed

NOW = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
CATALOGUE = load_catalogue()
DISPATCHER = Actor(role="dispatcher", id="d1")
BODY = {"category": "roof_leak", "description": "顶楼漏雨 / top floor leaks", "location": {"building": "7"}}


BLOW = next(g.request for g in build().together if g.request.subject == subjects.CMD_INTAKE_BLOW)


def request(key: str | None = None, actor: Actor = DISPATCHER, **changes) -> Command | Reply:
    """The request as intake admits it (its payload typed, its caller's role checked), or the refusal."""
    return typed(BLOW, Command(actor=actor, payload={**BODY, **changes, "idempotency_key": key}).model_dump())


def checked(key: str | None = None, actor: Actor = DISPATCHER, **changes) -> Blow | Reply:
    admitted = request(key, actor, **changes)
    return admitted if isinstance(admitted, Reply) else check(admitted, CATALOGUE, NOW)


def blow(key: str | None = None, **changes) -> Blow:
    out = checked(key, **changes)
    assert isinstance(out, Blow), out
    return out


def test_a_good_request_becomes_a_whistle_with_its_key_and_body_hash():
    b = blow("k1")
    assert b.whistle.category == "roof_leak" and b.whistle.actor == "dispatcher:d1" and b.whistle.occurred_at == NOW
    assert b.key == ("dispatcher:d1", "k1") and len(b.body_hash) == 64
    assert blow("k1").body_hash == b.body_hash  # the same body, the same hash
    assert blow("k1", description="another").body_hash != b.body_hash
    assert blow().key is None and blow().body_hash is None


def test_refusals_come_back_as_replies_naming_the_field():
    responder = checked(actor=Actor(role="responder", id="d-housing"))
    assert isinstance(responder, Reply) and responder.refusal.status == 403
    for changes, field in (({"location": {"building": "99"}}, "location.building"),
                           ({"category": "alien_landing"}, "category"),
                           ({"description": ""}, "description"),
                           ({"attributes": "not a dict"}, "attributes"),
                           ({"description": "leak\x00"}, "description"),  # Postgres text cannot hold NUL
                           ({"location": {"building": "7", "address": "7\x00"}}, "location.address"),
                           ({"attachments": ["https://a.org/1.jpg", "https://a.org/\x00.jpg"]}, "attachments")):
        out = checked(**changes)
        assert isinstance(out, Reply) and out.refusal.status == 422 and out.refusal.field == field, (changes, out)


def test_without_keys_every_request_is_a_new_whistle():
    batch = [blow(), blow(), blow()]
    settled = settle(batch, {})
    assert [s.new for s in settled] == [True, True, True]
    assert [s.reply.data["id"] for s in settled] == [str(b.whistle.whistle_id) for b in batch]
    assert all(s.reply.ok and "replayed" not in s.reply.data for s in settled)


def test_the_same_key_twice_in_a_batch_gives_the_second_the_first_whistle():
    first, again = blow("k"), blow("k")
    assert first.whistle.whistle_id != again.whistle.whistle_id
    settled = settle([first, again], {})
    assert [s.new for s in settled] == [True, False]
    assert settled[1].reply.ok and settled[1].reply.data == {"id": str(first.whistle.whistle_id), "status": "open",
                                                             "replayed": True}
    assert first_uses([first, again]) == [first]


def test_the_same_key_with_another_body_in_a_batch_is_a_409():
    settled = settle([blow("k"), blow("k", description="another"), blow("k")], {})
    assert [s.new for s in settled] == [True, False, False]
    assert settled[1].reply.refusal.status == 409 and settled[1].reply.refusal.code == "idempotency_conflict"
    assert settled[1].reply.refusal.field == "Idempotency-Key"
    assert settled[2].reply.data["replayed"] is True  # the first body still replays


def test_a_key_already_held_replays_its_whistle_or_refuses_another_body():
    held = blow("k")
    known = {held.key: Seen(held.body_hash, earlier := uuid7())}
    same, other, fresh = blow("k"), blow("k", description="another"), blow("k2")
    settled = settle([same, other, fresh], known)
    assert [s.new for s in settled] == [False, False, True]
    assert settled[0].reply.data == {"id": str(earlier), "status": "open", "replayed": True}
    assert settled[1].reply.refusal.status == 409
    assert settled[2].reply.data["id"] == str(fresh.whistle.whistle_id)


def test_keys_are_per_caller():
    mine, theirs = blow("k"), check(request("k", actor=Actor(role="supervisor", id="s1")), CATALOGUE, NOW)
    assert [s.new for s in settle([mine, theirs], {})] == [True, True]
