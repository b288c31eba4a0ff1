"""The seed community's registry: generated deterministically, and the committed data file is it."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pytest

from services.escalation.domain import DISTRICT_COMMAND, STREET_COMMAND, target_of
from services.routing import seed
from services.routing.registry import DEFAULT_REGISTRY, Registry, load_registry, responder_from
from shared.contracts import ResponderKind

GENERATED = seed.generate()
RESPONDERS = {r["id"]: r for r in GENERATED["responders"]}
MEMBERS = [r for r in GENERATED["responders"] if r["kind"] == "member"]
BRANCH_MEMBERS = [r for r in MEMBERS if r["branch"] is not None]


def test_generate_is_deterministic():
    assert seed.generate() == seed.generate()
    assert seed.generate(7) == GENERATED


def test_another_seed_gives_another_community_of_the_same_shape():
    other = seed.generate(8)
    assert other != GENERATED
    assert [r["id"] for r in other["responders"]] == [r["id"] for r in GENERATED["responders"]]


def test_responder_ids_are_unique():
    ids = [r["id"] for r in GENERATED["responders"]]
    assert len(ids) == len(set(ids))


def test_the_community_has_896_party_members():
    assert len(MEMBERS) == 896
    assert {"c-secretary", "c-deputy"} <= {r["id"] for r in MEMBERS}


def test_ten_branches_each_with_one_secretary_under_the_community_secretary():
    branches = Counter(r["branch"] for r in BRANCH_MEMBERS)
    assert set(branches) == {str(b) for b in range(1, 11)}
    assert sum(branches.values()) == 896 - 2  # the committee's secretary and deputy belong to no branch
    for b in range(1, 11):
        secretaries = [r for r in BRANCH_MEMBERS if r["branch"] == str(b) and "书记" in r["name_zh"]]
        assert [r["id"] for r in secretaries] == [f"m-b{b:02d}-secretary"]
        assert secretaries[0]["superior_id"] == "c-secretary"


def test_each_branch_has_three_committee_members_and_the_rest_report_to_its_secretary():
    for b in range(1, 11):
        branch = [r for r in BRANCH_MEMBERS if r["branch"] == str(b)]
        committee = [r for r in branch if "书记" in r["name_zh"] or "委员" in r["name_zh"]]
        assert len(committee) == 3
        for r in branch:
            if r["id"] != f"m-b{b:02d}-secretary":
                assert r["superior_id"] == f"m-b{b:02d}-secretary"


def test_every_member_lives_in_one_of_the_22_buildings():
    assert {r["building"] for r in MEMBERS} == {str(n) for n in range(1, 23)}


def test_the_four_grids_partition_the_22_buildings():
    grids = GENERATED["grids"]
    assert sorted(grids) == ["g1", "g2", "g3", "g4"]
    buildings = [b for bs in grids.values() for b in bs]
    assert sorted(buildings, key=int) == [str(n) for n in range(1, 23)]
    assert len(buildings) == len(set(buildings))


def test_every_superior_resolves():
    for r in GENERATED["responders"]:
        assert r["superior_id"] is None or r["superior_id"] in RESPONDERS, r["id"]


def test_superior_chains_end_without_cycles():
    for r in GENERATED["responders"]:
        seen = [r["id"]]
        current = r
        while current["superior_id"] is not None:
            assert current["superior_id"] not in seen, f"cycle: {seen + [current['superior_id']]}"
            seen.append(current["superior_id"])
            current = RESPONDERS[current["superior_id"]]
        assert len(seen) <= 4  # member → branch secretary → community secretary, or unit → head


@pytest.mark.parametrize("kind", ["section", "department"])
def test_sections_and_departments_each_have_a_head(kind):
    units = [r for r in GENERATED["responders"] if r["kind"] == kind and not r["id"].endswith("-head")]
    expected = seed.SECTIONS if kind == "section" else seed.DEPARTMENTS
    assert [u["id"] for u in units] == [uid for uid, _, _ in expected]
    for unit in units:
        head = RESPONDERS[unit["superior_id"]]
        assert head["id"] == f"{unit['id']}-head"
        assert head["kind"] == kind
        assert head["superior_id"] is None


def test_the_ladders_upper_rungs_are_command_centre_accounts_under_escalations_ids():
    rungs = [responder_from(r) for r in GENERATED["responders"] if r["kind"] == "command_centre"]
    assert [r.id for r in rungs] == [STREET_COMMAND, DISTRICT_COMMAND]
    assert all(r.kind is ResponderKind.command_centre and not r.summonable and r.name_zh for r in rungs)
    assert RESPONDERS[STREET_COMMAND]["superior_id"] == DISTRICT_COMMAND  # its "superior" contact step
    assert RESPONDERS[DISTRICT_COMMAND]["superior_id"] is None


def test_every_rung_escalation_can_name_is_in_the_registry():
    for r in GENERATED["responders"]:
        if r["kind"] == "command_centre":
            continue
        clock = SimpleNamespace(responder_id=r["id"], superior_id=r["superior_id"])
        for level in ("responder", "superior", "street_command", "district"):
            assert target_of(clock, SimpleNamespace(level=level)) in RESPONDERS, (r["id"], level)


def test_every_member_has_skills_windows_and_a_positive_capacity_that_parse():
    for raw in MEMBERS:
        r = responder_from(raw)
        assert r.kind is ResponderKind.member
        assert r.skills and r.skills <= set(seed.SKILLS)
        assert r.availability
        assert r.max_concurrent >= 1


def test_the_committed_registry_file_is_the_seeds_output():
    assert json.loads(DEFAULT_REGISTRY.read_text(encoding="utf-8")) == GENERATED


def test_the_committed_registry_file_is_byte_for_byte_what_regenerating_writes():
    # `python -m services.routing.seed > data/registry.json` must leave no diff behind
    assert DEFAULT_REGISTRY.read_text(encoding="utf-8") == json.dumps(GENERATED, ensure_ascii=False, indent=1) + "\n"


def test_the_packaged_registry_loads_as_the_seed():
    registry = load_registry()
    assert isinstance(registry, Registry)
    assert set(registry.responders) == set(RESPONDERS)
    assert len(registry.members) == 896
    assert registry.grid_of == {b: g for g, bs in GENERATED["grids"].items() for b in bs}
    assert sum(len(ms) for ms in registry.by_building.values()) == 896
