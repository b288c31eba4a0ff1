"""Intake: a raised whistle is checked against the catalogue and the community's buildings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.intake.domain import BUILDINGS, Category, blow, load_catalogue
from shared.commands import RaiseWhistle
from shared.contracts import Refusal, Source, Tier, WhistleBlown

NOW = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
CATALOGUE = load_catalogue()
ACTOR = "dispatcher:grid-leader"


def raise_whistle(category: str = "fence_broken", building: str = "7", **extra) -> RaiseWhistle:
    return RaiseWhistle.model_validate({
        "category": category, "description": "fence cut, people shortcut through it",
        "location": {"building": building}, **extra,
    })


def test_catalogue_is_the_default_service_catalogue():
    assert len(CATALOGUE) == 12
    assert {"fence_broken", "ebike_charging", "roof_leak", "elderly_care"} <= set(CATALOGUE)
    for code, category in CATALOGUE.items():
        assert category.code == code
        assert category.name_en and category.name_zh
        assert category.default_tier in set(Tier)


def test_buildings_are_the_22_of_the_community():
    assert BUILDINGS == {str(n) for n in range(1, 23)}


def test_unknown_category_is_refused_on_its_field():
    out = blow(raise_whistle("alien_landing"), CATALOGUE, ACTOR, NOW)
    assert isinstance(out, Refusal)
    assert (out.status, out.code, out.field) == (422, "unknown_category", "category")
    assert "alien_landing" in out.reason


@pytest.mark.parametrize("building", ["0", "23", "-1", "07", "7A", "B7", "100"])
def test_building_outside_the_community_is_refused_on_its_field(building):
    out = blow(raise_whistle(building=building), CATALOGUE, ACTOR, NOW)
    assert isinstance(out, Refusal)
    assert (out.status, out.code, out.field) == (422, "unknown_building", "location.building")


def test_category_is_checked_before_building():
    out = blow(raise_whistle("alien_landing", "99"), CATALOGUE, ACTOR, NOW)
    assert out.field == "category"


@pytest.mark.parametrize("building", sorted(BUILDINGS, key=int))
def test_every_building_is_accepted(building):
    assert isinstance(blow(raise_whistle(building=building), CATALOGUE, ACTOR, NOW), WhistleBlown)


def test_valid_whistle_is_blown():
    cmd = raise_whistle("roof_leak", "12", tier="urgent", source="hotline_12345")
    out = blow(cmd, CATALOGUE, ACTOR, NOW)
    assert isinstance(out, WhistleBlown)
    assert out.whistle_id.version == 7
    assert out.whistle_id.variant == "specified in RFC 4122"
    assert out.correlation_id == out.whistle_id
    assert out.occurred_at == NOW
    assert out.actor == ACTOR
    assert out.category == "roof_leak"
    assert out.description == "fence cut, people shortcut through it"
    assert out.location.building == "12"
    assert (out.tier, out.source) == (Tier.urgent, Source.hotline_12345)
    assert out.subject == "whistle.blown"


def test_each_whistle_gets_its_own_id():
    ids = {blow(raise_whistle(), CATALOGUE, ACTOR, NOW).whistle_id for _ in range(20)}
    assert len(ids) == 20


def test_custom_catalogue_and_buildings():
    catalogue = {"noise": Category("noise", "Noise", "噪音扰民", "routine")}
    assert isinstance(blow(raise_whistle("noise", "A"), catalogue, ACTOR, NOW, buildings={"A"}), WhistleBlown)
    assert blow(raise_whistle("fence_broken", "A"), catalogue, ACTOR, NOW, buildings={"A"}).field == "category"
    assert blow(raise_whistle("noise", "7"), catalogue, ACTOR, NOW, buildings={"A"}).field == "location.building"


def test_a_whistle_without_a_tier_takes_its_category_default():
    roof = RaiseWhistle.model_validate({"category": "roof_leak", "description": "leak", "location": {"building": "7"}})
    fence = RaiseWhistle.model_validate({"category": "fence_broken", "description": "cut", "location": {"building": "3"}})
    assert blow(roof, CATALOGUE, "dispatcher:d", NOW).tier is Tier.urgent
    assert blow(fence, CATALOGUE, "dispatcher:d", NOW).tier is Tier.routine
    explicit = roof.model_copy(update={"tier": Tier.complex})
    assert blow(explicit, CATALOGUE, "dispatcher:d", NOW).tier is Tier.complex
