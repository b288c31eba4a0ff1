"""Routing's pure rules: which rule a whistle matches, whom it summons, and why.

A rule matches on category, and optionally tier and area (grid or building); its lead and
co-handlers (complex tier: a joint whistle, 首接负责) are named units or party members chosen
by building proximity, skill, availability and load — least loaded first, then whoever was
summoned longest ago (rotation). Every candidate looked at is recorded, chosen or skipped with
the reason, so a supervisor can ask why. A whistle nothing can place is unroutable, never dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from services.routing.registry import Registry, Responder
from shared.contracts import (
    NOT_SUMMONABLE,
    Event,
    ResponderKind,
    SummonsIssued,
    Tier,
    WhistleBlown,
    WhistleRouted,
    WhistleUnroutable,
)
from shared.ids import uuid7

DEFAULT_RULES = Path(__file__).parent / "data" / "rules.json"
EXPLAIN_LIMIT = 40  # candidates listed one by one; the rest are counted by reason


@dataclass(frozen=True)
class Selector:
    """A named unit (`id`), or a party member to choose (`kind` member, optional `skill`)."""

    id: str | None = None
    kind: ResponderKind | None = None
    skill: str | None = None

    def describe(self) -> str:
        return self.id or f"a party member{' with skill ' + self.skill if self.skill else ''}"


@dataclass(frozen=True)
class Rule:
    name: str
    category: str
    lead: Selector
    co: tuple[Selector, ...] = ()
    fallback: Selector | None = None
    tiers: frozenset[Tier] | None = None
    grids: frozenset[str] | None = None
    buildings: frozenset[str] | None = None

    def matches(self, whistle: WhistleBlown, grid: str | None) -> str | None:
        """None when the rule applies, else why not."""
        if whistle.category != self.category:
            return "another category"
        if self.tiers is not None and whistle.tier not in self.tiers:
            return f"tier {whistle.tier.value} not in {sorted(t.value for t in self.tiers)}"
        if self.grids is not None and grid not in self.grids:
            return f"grid {grid} not in {sorted(self.grids)}"
        if self.buildings is not None and whistle.location.building not in self.buildings:
            return f"building {whistle.location.building} not in the rule's area"
        return None


@dataclass
class LoadBook:
    """Open summons per responder, and when each was last summoned (for rotation)."""

    load: dict[str, int] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    tick: int = 0
    assigned: dict[str, int] = field(default_factory=dict)  # summons added since it was read (to write back)

    def assign(self, responder_id: str) -> None:
        self.tick += 1
        self.load[responder_id] = self.load.get(responder_id, 0) + 1
        self.last[responder_id] = self.tick
        self.assigned[responder_id] = self.assigned.get(responder_id, 0) + 1

    def release(self, responder_id: str) -> None:
        self.load[responder_id] = max(0, self.load.get(responder_id, 0) - 1)

    def copy(self) -> LoadBook:
        return LoadBook(dict(self.load), dict(self.last), self.tick, dict(self.assigned))


@dataclass(frozen=True)
class Candidate:
    responder_id: str
    chosen: bool
    reason: str

    def as_dict(self) -> dict:
        return {"responder_id": self.responder_id, "chosen": self.chosen, "reason": self.reason}


@dataclass(frozen=True)
class Choice:
    role: str  # lead | co
    wanted: str
    responder: Responder | None
    candidates: tuple[Candidate, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)  # reason → count, beyond EXPLAIN_LIMIT


@dataclass(frozen=True)
class Decision:
    """The whole routing decision for one whistle, kept for `whistle route --explain`."""

    rule: str | None
    rules_considered: tuple[tuple[str, str], ...]
    choices: tuple[Choice, ...]
    unroutable: str | None = None

    def explain(self) -> dict:
        return {
            "rule": self.rule,
            "rules_considered": [{"rule": n, "verdict": v} for n, v in self.rules_considered],
            "choices": [
                {"role": c.role, "wanted": c.wanted, "chosen": c.responder.id if c.responder else None,
                 "candidates": [x.as_dict() for x in c.candidates], "also_skipped": c.skipped}
                for c in self.choices
            ],
            "unroutable": self.unroutable,
        }


def _selector(raw: dict, where: str) -> Selector:
    unknown = set(raw) - {"id", "kind", "skill"}
    if unknown or not (raw.get("id") or raw.get("kind") == "member"):
        raise ValueError(f"{where}: a selector is {{'id': …}} or {{'kind': 'member', 'skill': …}}, not {raw}")
    return Selector(id=raw.get("id"), kind=ResponderKind(raw["kind"]) if raw.get("kind") else None, skill=raw.get("skill"))


def load_rules(registry: Registry, path: Path = DEFAULT_RULES, categories: set[str] | None = None) -> list[Rule]:
    """Read and check the rules: named units exist, fields are known; errors name the rule."""
    rules = []
    for i, raw in enumerate(json.loads(path.read_text(encoding="utf-8"))["rules"]):
        where = f"{path}: rule {raw.get('name', i)!r}"
        unknown = set(raw) - {"name", "category", "tiers", "grids", "buildings", "lead", "co", "fallback"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        if categories is not None and raw["category"] not in categories:
            raise ValueError(f"{where}: unknown category {raw['category']!r}")
        try:
            rule = Rule(
                name=raw["name"], category=raw["category"], lead=_selector(raw["lead"], where),
                co=tuple(_selector(c, where) for c in raw.get("co", ())),
                fallback=_selector(raw["fallback"], where) if raw.get("fallback") else None,
                tiers=frozenset(Tier(t) for t in raw["tiers"]) if raw.get("tiers") else None,
                grids=frozenset(raw["grids"]) if raw.get("grids") else None,
                buildings=frozenset(raw["buildings"]) if raw.get("buildings") else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            message = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None
        for s in (rule.lead, *rule.co, *([rule.fallback] if rule.fallback else [])):
            if s.id and s.id not in registry:
                raise ValueError(f"{where}: unknown responder {s.id!r}")
            if s.id and not registry[s.id].summonable:
                raise ValueError(f"{where}: {s.id!r} is a command centre: {NOT_SUMMONABLE}")
        rules.append(rule)
    return rules


def _member_verdict(m: Responder, skill: str | None, book: LoadBook, now: datetime, exclude: set[str]) -> str | None:
    """None when the member can take the summons, else why not."""
    if m.id in exclude:
        return "already on this whistle or returned it"
    if skill and skill not in m.skills:
        return f"lacks skill {skill}"
    if not m.available(now):
        return "not available now"
    load = book.load.get(m.id, 0)
    if load >= m.max_concurrent:
        return f"busy ({load}/{m.max_concurrent} open summons)"
    return None


def choose_member(
    sel: Selector, building: str, registry: Registry, book: LoadBook, now: datetime, exclude: set[str], role: str,
) -> Choice:
    """Nearest ring first (same building, same grid, anywhere); in a ring the least loaded, then rotation."""
    listed: list[Candidate] = []
    skipped: dict[str, int] = {}
    for ring, members, without_skill in registry.rings(building, sel.skill):
        if without_skill > 0:  # counted, not listed: most members lack any one skill
            why = f"lacks skill {sel.skill}"
            skipped[why] = skipped.get(why, 0) + without_skill
        eligible = []
        for m in members:
            why = _member_verdict(m, None, book, now, exclude)
            if why is None:
                eligible.append(m)
            elif len(listed) < EXPLAIN_LIMIT:
                listed.append(Candidate(m.id, False, f"{ring}: {why}"))
            else:
                skipped[why] = skipped.get(why, 0) + 1
        if eligible:
            rank = sorted(eligible, key=lambda m: (book.load.get(m.id, 0), book.last.get(m.id, 0), m.id))
            best = rank[0]
            reason = f"{ring}, load {book.load.get(best.id, 0)}/{best.max_concurrent}, least loaded then longest since summoned"
            beaten = f"{ring}: more loaded or summoned more recently"
            room = max(0, EXPLAIN_LIMIT - len(listed))
            listed.extend(Candidate(m.id, False, beaten) for m in rank[1:1 + room])
            if len(rank) - 1 > room:
                skipped[beaten] = skipped.get(beaten, 0) + len(rank) - 1 - room
            return Choice(role, sel.describe(), best, (Candidate(best.id, True, reason), *listed), skipped)
    return Choice(role, sel.describe(), None, tuple(listed), skipped)


def choose(
    sel: Selector, whistle: WhistleBlown, registry: Registry, book: LoadBook, now: datetime, exclude: set[str], role: str,
) -> Choice:
    if sel.id:
        unit = registry.responders.get(sel.id)
        if unit is None or not unit.active:
            return Choice(role, sel.describe(), None, (Candidate(sel.id, False, "inactive or removed"),))
        if not unit.summonable:  # made one by an edit since the rules were loaded
            return Choice(role, sel.describe(), None, (Candidate(sel.id, False, NOT_SUMMONABLE),))
        if sel.id in exclude:
            return Choice(role, sel.describe(), None, (Candidate(sel.id, False, "already on this whistle or returned it"),))
        return Choice(role, sel.describe(), unit, (Candidate(unit.id, True, "named by the rule"),))
    return choose_member(sel, whistle.location.building, registry, book, now, exclude, role)


def decide(
    whistle: WhistleBlown, rules: list[Rule], registry: Registry, book: LoadBook, now: datetime,
    exclude: frozenset[str] = frozenset(),
) -> Decision:
    """Match the first rule, choose the lead (or the fallback) and each co-handler."""
    grid = whistle.location.grid or registry.grid_of.get(whistle.location.building)
    considered = []
    rule = None
    for r in rules:
        why = r.matches(whistle, grid)
        if r.category == whistle.category:
            considered.append((r.name, "matched" if why is None and rule is None else why or "a rule before it matched"))
        if why is None and rule is None:
            rule = r
    if rule is None:
        return Decision(None, tuple(considered), (), f"no routing rule for category {whistle.category!r} here")
    taken = set(exclude)
    lead = choose(rule.lead, whistle, registry, book, now, taken, "lead")
    choices = [lead]
    if lead.responder is None and rule.fallback:
        lead = choose(rule.fallback, whistle, registry, book, now, taken, "lead (fallback)")
        choices.append(lead)
    if lead.responder is None:
        return Decision(rule.name, tuple(considered), tuple(choices), f"nobody can lead: {rule.lead.describe()}")
    taken.add(lead.responder.id)
    for sel in rule.co:
        co = choose(sel, whistle, registry, book, now, taken, "co")
        choices.append(co)
        if co.responder:
            taken.add(co.responder.id)
    return Decision(rule.name, tuple(considered), tuple(choices))


def summon(
    responder: Responder, whistle: WhistleBlown, role: str, now: datetime, book: LoadBook, *,
    actor: str = "system:routing", causation_id=None, arbitrated: bool = False, replaces=None,
) -> SummonsIssued:
    """A summons for one responder (its load counted)."""
    book.assign(responder.id)
    return SummonsIssued(
        occurred_at=now, whistle_id=whistle.whistle_id, causation_id=causation_id or whistle.event_id, actor=actor,
        summons_id=uuid7(), responder_id=responder.id, responder_kind=responder.kind, responder_name=responder.name_en,
        superior_id=responder.superior_id, role=role, category=whistle.category, tier=whistle.tier,
        arbitrated=arbitrated, replaces=replaces,
    )


def reroute(
    whistle: WhistleBlown, role: str, rules: list[Rule], registry: Registry, book: LoadBook, now: datetime,
    exclude: frozenset[str], causation_id, replaces,
) -> tuple[Decision, list[Event]]:
    """退单 → someone else: the same rules, everyone who returned it or already holds it excluded."""
    decision = decide(whistle, rules, registry, book, now, exclude)
    wanted = [c for c in decision.choices if (c.role == "co") == (role == "co") and c.responder
              and c.candidates and c.candidates[0].chosen]
    if decision.unroutable or not wanted:
        reason = decision.unroutable or f"nobody else can take the {role} summons"
        return decision, [WhistleUnroutable(occurred_at=now, whistle_id=whistle.whistle_id, causation_id=causation_id,
                                            actor="system:routing", reason=reason)]
    return decision, [summon(wanted[0].responder, whistle, role, now, book, causation_id=causation_id, replaces=replaces)]


def route(
    whistle: WhistleBlown, rules: list[Rule], registry: Registry, book: LoadBook, now: datetime,
    exclude: frozenset[str] = frozenset(),
) -> tuple[Decision, list[Event]]:
    """Summon the lead and co-handlers (updating the load book), or declare the whistle unroutable."""
    decision = decide(whistle, rules, registry, book, now, exclude)
    common = dict(occurred_at=now, whistle_id=whistle.whistle_id, causation_id=whistle.event_id, actor="system:routing")
    if decision.unroutable:
        return decision, [WhistleUnroutable(**common, reason=decision.unroutable)]
    summoned = [c for c in decision.choices if c.responder and c.candidates and c.candidates[0].chosen]
    events: list[Event] = [
        summon(c.responder, whistle, "co" if c.role == "co" else "lead", now, book) for c in summoned
    ]
    lead_id = next(e.responder_id for e in events if e.role == "lead")
    co_ids = [e.responder_id for e in events if isinstance(e, SummonsIssued) and e.role == "co"]
    events.append(WhistleRouted(**common, rule=decision.rule, lead_responder_id=lead_id, co_responder_ids=co_ids))
    return decision, events
