"""Routing: the packaged registry and rules, choosing a lead, and the events of a routed whistle."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

import pytest

from services.intake.domain import BUILDINGS, load_catalogue
from services.routing.domain import (
    MEMBER_BY_BUILDING,
    Responder,
    Rule,
    choose_lead,
    load_registry,
    load_rules,
    route,
)
from shared.contracts import (
    Location,
    ResponderKind,
    Source,
    SummonsIssued,
    Tier,
    WhistleBlown,
    WhistleRouted,
    WhistleUnroutable,
)

NOW = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
WHISTLE_ID = UUID("0195f0a0-0000-7000-8000-000000000001")
REGISTRY = load_registry()
RULES = load_rules(REGISTRY)


def blown(category: str = "fence_broken", building: str = "7", tier: Tier = Tier.urgent) -> WhistleBlown:
    return WhistleBlown(
        occurred_at=NOW, whistle_id=WHISTLE_ID, actor="dispatcher:grid-leader", category=category,
        description="fence cut next to building 7", location=Location(building=building), tier=tier,
        source=Source.grid_patrol,
    )


def member(id: str, *buildings: str) -> Responder:
    return Responder(id=id, kind=ResponderKind.member, name_en=id, name_zh=id, buildings=buildings)


# --- packaged data ----------------------------------------------------------------


def test_registry_superiors_all_resolve():
    assert len(REGISTRY) == 17
    for responder in REGISTRY.values():
        assert responder.superior_id is None or responder.superior_id in REGISTRY


def test_registry_superior_chains_end_without_cycles():
    for responder in REGISTRY.values():
        seen, current = set(), responder
        while current.superior_id is not None:
            assert current.id not in seen, f"cycle through {current.id}"
            seen.add(current.id)
            current = REGISTRY[current.superior_id]


def test_registry_has_all_three_kinds_of_responder():
    assert {r.kind for r in REGISTRY.values()} == set(ResponderKind)


def test_every_rule_lead_exists():
    for rule in RULES:
        assert rule.lead == MEMBER_BY_BUILDING or rule.lead in REGISTRY, rule.name


def test_every_catalogue_category_has_exactly_one_rule():
    categories = [rule.category for rule in RULES]
    assert sorted(categories) == sorted(load_catalogue())


def test_every_building_has_a_party_member():
    for building in BUILDINGS:
        assert any(
            r.kind is ResponderKind.member and building in r.buildings for r in REGISTRY.values()
        ), building


def test_registry_with_a_dangling_superior_is_refused(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"responders": [
        {"id": "s-urban", "kind": "section", "name_en": "Urban", "name_zh": "城管科", "superior_id": "s-nobody"},
    ]}), encoding="utf-8")
    with pytest.raises(ValueError, match="s-nobody"):
        load_registry(path)


def test_rules_naming_an_unknown_lead_are_refused(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [
        {"name": "fence-to-nobody", "category": "fence_broken", "lead": "d-nobody"},
    ]}), encoding="utf-8")
    with pytest.raises(ValueError, match="d-nobody"):
        load_rules(REGISTRY, path)


# --- choose_lead ------------------------------------------------------------------


@pytest.mark.parametrize(("category", "lead"), [
    ("fence_broken", "s-urban"),
    ("roof_leak", "d-housing"),
    ("ebike_charging", "d-property"),
    ("elderly_care", "s-civil"),
    ("safety_awareness", "d-police"),
])
def test_fixed_lead(category, lead):
    rule, responder = choose_lead(blown(category), RULES, REGISTRY, {})
    assert rule.category == category
    assert responder.id == lead


def test_fixed_lead_ignores_load():
    _, responder = choose_lead(blown("fence_broken"), RULES, REGISTRY, {"s-urban": 99})
    assert responder.id == "s-urban"


@pytest.mark.parametrize(("building", "lead"), [("1", "m-zhang-wei"), ("8", "m-zhang-wei"),
                                                ("9", "m-li-na"), ("15", "m-li-na"),
                                                ("16", "m-wang-fang"), ("22", "m-wang-fang")])
def test_member_by_building_on_packaged_registry(building, lead):
    rule, responder = choose_lead(blown("stairwell_dirty", building), RULES, REGISTRY, {})
    assert rule.lead == MEMBER_BY_BUILDING
    assert responder.id == lead


def test_member_by_building_prefers_the_least_loaded_then_the_lowest_id():
    registry = {r.id: r for r in [
        member("m-c", "7"), member("m-a", "7"), member("m-b", "7"), member("m-other", "8"),
    ]}
    rules = [Rule(name="drying-to-member", category="clothes_drying", lead=MEMBER_BY_BUILDING)]
    whistle = blown("clothes_drying", "7")
    assert choose_lead(whistle, rules, registry, {})[1].id == "m-a"
    assert choose_lead(whistle, rules, registry, {"m-a": 2, "m-b": 1, "m-c": 1})[1].id == "m-b"
    assert choose_lead(whistle, rules, registry, {"m-a": 2, "m-b": 3})[1].id == "m-c"
    assert choose_lead(whistle, rules, registry, {"m-other": 0, "m-a": 1, "m-b": 1, "m-c": 1})[1].id == "m-a"


def test_member_by_building_skips_sections_and_departments():
    registry = {
        "s-x": Responder(id="s-x", kind=ResponderKind.section, name_en="x", name_zh="x", buildings=("7",)),
        "m-y": member("m-y", "7"),
    }
    rules = [Rule(name="r", category="clothes_drying", lead=MEMBER_BY_BUILDING)]
    assert choose_lead(blown("clothes_drying", "7"), rules, registry, {"m-y": 50})[1].id == "m-y"


def test_unknown_category_gives_a_reason():
    reason = choose_lead(blown("alien_landing"), RULES, REGISTRY, {})
    assert isinstance(reason, str) and "alien_landing" in reason


def test_building_without_a_member_gives_a_reason():
    reason = choose_lead(blown("clothes_drying", "23"), RULES, REGISTRY, {})
    assert isinstance(reason, str) and "'23'" in reason


# --- route ------------------------------------------------------------------------


def test_route_issues_a_summons_then_records_the_route():
    whistle = blown("roof_leak", "12", Tier.urgent)
    issued, routed = route(whistle, RULES, REGISTRY, {}, NOW)
    assert type(issued) is SummonsIssued and type(routed) is WhistleRouted
    for event in (issued, routed):
        assert event.causation_id == whistle.event_id
        assert event.correlation_id == WHISTLE_ID
        assert event.whistle_id == WHISTLE_ID
        assert event.occurred_at == NOW
        assert event.actor == "system:routing"
    assert issued.responder_id == "d-housing"
    assert issued.responder_kind is ResponderKind.department
    assert issued.responder_name == REGISTRY["d-housing"].name_en
    assert issued.superior_id == "d-housing-head"
    assert issued.role == "lead"
    assert (issued.category, issued.tier) == ("roof_leak", Tier.urgent)
    assert issued.summons_id.version == 7
    assert routed.rule == "roof-leak-to-housing"
    assert routed.lead_responder_id == "d-housing"


def test_route_gives_each_summons_its_own_id():
    first, _ = route(blown(), RULES, REGISTRY, {}, NOW)
    second, _ = route(blown(), RULES, REGISTRY, {}, NOW)
    assert first.summons_id != second.summons_id


@pytest.mark.parametrize(("category", "building"), [("alien_landing", "7"), ("neighbour_dispute", "99")])
def test_unroutable_whistle_is_never_dropped(category, building):
    whistle = blown(category, building)
    [event] = route(whistle, RULES, REGISTRY, {}, NOW)
    assert type(event) is WhistleUnroutable
    assert event.causation_id == whistle.event_id
    assert event.correlation_id == WHISTLE_ID
    assert event.reason
