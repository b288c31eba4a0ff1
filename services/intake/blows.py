"""吹哨 in batches, the pure part: check one blow request, then settle a batch's Idempotency-Keys.

`check` turns a request into a whistle ready to save, or the reply that refuses it (a refusal is
answered at once and changes nothing). `settle` decides, for a batch in arrival order and the keys
the database already holds, which requests make a new whistle, which replay an earlier one (the
same key and body; the earlier one may be in the same batch) and which are a 409 (the key with
another body).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from pydantic import ValidationError

from services.intake import domain
from shared.commands import RaiseWhistle
from shared.contracts import Command, Refusal, Reply, WhistleBlown
from shared.validation import refusal_from

IdempotencyKey = tuple[str, str]  # (actor, key)


@dataclass(frozen=True)
class Blow:
    """A request that passed every check: its whistle, the command as raised and its key, if any."""

    whistle: WhistleBlown
    raised: RaiseWhistle
    key: IdempotencyKey | None = None
    body_hash: str | None = None


@dataclass(frozen=True)
class Seen:
    """What a key already made: the hash of the body it was first sent with, and the whistle."""

    body_hash: str
    whistle_id: UUID


@dataclass(frozen=True)
class Settled:
    """One request of a batch once its key is settled: `new` whistles are the ones to write."""

    blow: Blow
    reply: Reply
    new: bool


FORBIDDEN = Reply.refuse(403, "forbidden", "only dispatchers raise whistles / 只有社区调度员可以吹哨")
CONFLICT = Reply.refuse(409, "idempotency_conflict", "this Idempotency-Key was used for another whistle"
                        " / 该幂等键已用于另一条诉求", "Idempotency-Key")


def check(cmd: Command, catalogue: dict[str, domain.Category], now: datetime) -> Blow | Reply:
    """A blow request as a whistle to write, or the refusal to answer (403, 422)."""
    if cmd.actor.role not in ("dispatcher", "supervisor"):
        return FORBIDDEN
    body = {k: v for k, v in cmd.payload.items() if k not in ("idempotency_key", "attributes")}
    try:
        raised = RaiseWhistle.model_validate(body)
        if "attributes" in cmd.payload and raised.category in catalogue:
            suffix = attribute_suffix(catalogue[raised.category], cmd.payload["attributes"])
            if isinstance(suffix, Refusal):
                return Reply(ok=False, refusal=suffix)
            if suffix:  # validated again: the suffix counts against the description's length
                raised = RaiseWhistle.model_validate({**body, "description": f"{raised.description} {suffix}"})
    except ValidationError as exc:
        return Reply(ok=False, refusal=refusal_from(exc))
    if field := nul_field(raised):
        return Reply.refuse(422, "invalid", "text must not contain NUL characters / 文本不能包含空字符", field)
    outcome = domain.blow(raised, catalogue, str(cmd.actor), now)
    if isinstance(outcome, Refusal):
        return Reply(ok=False, refusal=outcome)
    key = cmd.payload.get("idempotency_key")
    if not key:
        return Blow(outcome, raised)
    body_hash = hashlib.sha256(raised.model_dump_json().encode()).hexdigest()
    return Blow(outcome, raised, (str(cmd.actor), str(key)), body_hash)


def nul_field(raised: RaiseWhistle) -> str | None:
    """The first field holding a NUL character, which Postgres text cannot store (it would fail the write)."""
    fields = {"description": raised.description, "category": raised.category,
              **{f"location.{k}": v for k, v in raised.location.model_dump().items()},
              **({f"reporter.{k}": v for k, v in raised.reporter.model_dump().items()} if raised.reporter else {}),
              "attachments": "".join(raised.attachments)}
    return next((name for name, value in fields.items() if isinstance(value, str) and "\x00" in value), None)


def first_uses(blows: Iterable[Blow]) -> list[Blow]:
    """The first request of the batch with each key: the ones that may claim it."""
    seen: set[IdempotencyKey] = set()
    firsts = []
    for b in blows:
        if b.key is not None and b.key not in seen:
            seen.add(b.key)
            firsts.append(b)
    return firsts


def settle(blows: Iterable[Blow], known: Mapping[IdempotencyKey, Seen]) -> list[Settled]:
    """Each request in arrival order against the keys already held and those claimed earlier in the batch."""
    claimed = dict(known)
    out = []
    for b in blows:
        seen = claimed.get(b.key) if b.key is not None else None
        if seen is None:
            if b.key is not None:
                claimed[b.key] = Seen(b.body_hash, b.whistle.whistle_id)
            out.append(Settled(b, Reply.success({"id": str(b.whistle.whistle_id), "status": "open"}), True))
        elif seen.body_hash != b.body_hash:
            out.append(Settled(b, CONFLICT, False))
        else:
            out.append(Settled(b, Reply.success({"id": str(seen.whistle_id), "status": "open", "replayed": True}),
                               False))
    return out


def attribute_suffix(category: domain.Category, given: object) -> Refusal | str:
    """The answers to the category's questions as a description suffix, or the refusal."""
    if not isinstance(given, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v) for k, v in given.items()):
        return Refusal(status=422, code="invalid", reason="attributes: {code: [values]} / 属性格式无效",
                       field="attributes")
    return domain.check_attributes(category, given)
