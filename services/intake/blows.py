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
from services.intake.payloads import BlowWhistle
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


CONFLICT = Reply.refuse(409, "idempotency_conflict", "this Idempotency-Key was used for another whistle"
                        " / 该幂等键已用于另一条诉求", "Idempotency-Key")
NOT_RAISED = {"idempotency_key", "attributes"}  # what the request carries besides the whistle as raised


def check(cmd: Command[BlowWhistle], catalogue: dict[str, domain.Category], now: datetime) -> Blow | Reply:
    """A blow request (its payload validated, its caller's role checked) as a whistle to write, or the
    refusal to answer (422: the category's answers, NUL characters, the catalogue)."""
    payload = cmd.payload
    raised: RaiseWhistle = payload
    if payload.attributes is not None and payload.category in catalogue:
        suffix = domain.check_attributes(catalogue[payload.category], payload.attributes)
        if isinstance(suffix, Refusal):
            return Reply(ok=False, refusal=suffix)
        if suffix:  # validated again: the suffix counts against the description's length
            try:
                raised = RaiseWhistle.model_validate({**payload.model_dump(exclude=NOT_RAISED),
                                                      "description": f"{payload.description} {suffix}"})
            except ValidationError as exc:
                return Reply(ok=False, refusal=refusal_from(exc))
    if field := nul_field(raised):
        return Reply.refuse(422, "invalid", "text must not contain NUL characters / 文本不能包含空字符", field)
    outcome = domain.blow(raised, catalogue, str(cmd.actor), now)
    if isinstance(outcome, Refusal):
        return Reply(ok=False, refusal=outcome)
    if not payload.idempotency_key:
        return Blow(outcome, raised)
    body_hash = hashlib.sha256(raised.model_dump_json(exclude=NOT_RAISED).encode()).hexdigest()
    return Blow(outcome, raised, (str(cmd.actor), payload.idempotency_key), body_hash)


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
