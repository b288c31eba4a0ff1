"""Routing's pure rules: which responder a whistle summons, and why."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from shared.contracts import (
    Event,
    ResponderKind,
    SummonsIssued,
    WhistleBlown,
    WhistleRouted,
    WhistleUnroutable,
)
from shared.ids import uuid7

HERE = Path(__file__).parent
DEFAULT_REGISTRY = HERE / "registry.json"
DEFAULT_RULES = HERE / "rules.json"
MEMBER_BY_BUILDING = "member:building"


@dataclass(frozen=True)
class Responder:
    id: str
    kind: ResponderKind
    name_en: str
    name_zh: str
    superior_id: str | None = None
    branch: str | None = None
    buildings: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Rule:
    name: str
    category: str
    lead: str  # a responder id, or "member:building"


def load_registry(path: Path = DEFAULT_REGISTRY) -> dict[str, Responder]:
    """The responder registry (members, sections, departments), checked for dangling superiors."""
    raw = json.loads(path.read_text(encoding="utf-8"))["responders"]
    registry = {
        r["id"]: Responder(
            id=r["id"], kind=ResponderKind(r["kind"]), name_en=r["name_en"], name_zh=r["name_zh"],
            superior_id=r.get("superior_id"), branch=r.get("branch"), buildings=tuple(r.get("buildings") or ()),
        )
        for r in raw
    }
    for r in registry.values():
        if r.superior_id and r.superior_id not in registry:
            raise ValueError(f"{path}: responder {r.id!r} names unknown superior {r.superior_id!r}")
    return registry


def load_rules(registry: dict[str, Responder], path: Path = DEFAULT_RULES) -> list[Rule]:
    """Routing rules; every named lead must exist in the registry."""
    rules = [Rule(**r) for r in json.loads(path.read_text(encoding="utf-8"))["rules"]]
    for rule in rules:
        if rule.lead != MEMBER_BY_BUILDING and rule.lead not in registry:
            raise ValueError(f"{path}: rule {rule.name!r} names unknown responder {rule.lead!r}")
    return rules


def choose_lead(
    whistle: WhistleBlown, rules: list[Rule], registry: dict[str, Responder], load: dict[str, int]
) -> tuple[Rule, Responder] | str:
    """The matching rule and its lead, or the reason no one can be summoned."""
    rule = next((r for r in rules if r.category == whistle.category), None)
    if rule is None:
        return f"no routing rule for category {whistle.category!r}"
    if rule.lead != MEMBER_BY_BUILDING:
        return rule, registry[rule.lead]
    members = [
        r for r in registry.values()
        if r.kind is ResponderKind.member and whistle.location.building in r.buildings
    ]
    if not members:
        return f"no party member registered for building {whistle.location.building!r}"
    # least loaded first, then by id so the choice is deterministic
    return rule, min(members, key=lambda m: (load.get(m.id, 0), m.id))


def route(
    whistle: WhistleBlown, rules: list[Rule], registry: dict[str, Responder], load: dict[str, int], now: datetime
) -> list[Event]:
    """Summon the lead responder for a whistle, or declare it unroutable (never drop it)."""
    common = dict(occurred_at=now, whistle_id=whistle.whistle_id, causation_id=whistle.event_id, actor="system:routing")
    choice = choose_lead(whistle, rules, registry, load)
    if isinstance(choice, str):
        return [WhistleUnroutable(**common, reason=choice)]
    rule, lead = choice
    return [
        SummonsIssued(
            **common, summons_id=uuid7(), responder_id=lead.id, responder_kind=lead.kind,
            responder_name=lead.name_en, superior_id=lead.superior_id, role="lead",
            category=whistle.category, tier=whistle.tier,
        ),
        WhistleRouted(**common, rule=rule.name, lead_responder_id=lead.id),
    ]
