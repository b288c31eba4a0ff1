"""Problem classes (一个诉求解决一类问题): who joins which class, and the one proactive whistle at the threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.intake.classes import Decision, assign
from shared.contracts import Location, Source, Tier, WhistleBlown
from shared.ids import uuid7

T0 = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
WINDOW = timedelta(days=30)


def blown(at: datetime, category: str = "roof_leak", building: str = "19", grid: str | None = None,
          source: Source = Source.hotline_12345) -> WhistleBlown:
    return WhistleBlown(occurred_at=at, whistle_id=uuid7(), actor="dispatcher:d1", category=category,
                        description="顶楼漏雨", location=Location(building=building, grid=grid),
                        tier=Tier.routine, source=source)


class Community:
    """Intake's store, in memory: feeds each whistle the classes so far, keeps what assign decides."""

    def __init__(self, threshold: int = 5):
        self.threshold = threshold
        self.classes: dict = {}

    def blow(self, whistle: WhistleBlown) -> Decision | None:
        decision = assign(list(self.classes.values()), whistle, whistle.occurred_at, WINDOW, self.threshold)
        if decision:
            self.classes[decision.problem_class.id] = decision.problem_class
        return decision


def test_same_category_and_building_within_the_window_join_one_class():
    town = Community()
    first = town.blow(blown(T0))
    second = town.blow(blown(T0 + timedelta(days=29)))
    third = town.blow(blown(T0 + timedelta(days=30)))
    assert first.created and not second.created and not third.created
    assert second.problem_class.id == first.problem_class.id and third.problem_class.size == 3
    # alone, a whistle is not grouped; the second tells both, the third only itself
    assert first.grouped == ()
    assert [g.whistle_id for g in second.grouped] == [first.problem_class.first_whistle_id,
                                                       second.grouped[1].whistle_id]
    assert len(third.grouped) == 1 and third.grouped[0].size == 3
    g = second.grouped[1]
    assert g.class_id == first.problem_class.id and g.size == 2
    assert g.first_seen == T0 and g.last_seen == T0 + timedelta(days=29)


def test_the_window_runs_from_the_latest_whistle_and_a_later_one_starts_a_new_class():
    town = Community()
    first = town.blow(blown(T0))
    town.blow(blown(T0 + timedelta(days=20)))
    still = town.blow(blown(T0 + timedelta(days=45)))  # 25 days after the latest
    late = town.blow(blown(T0 + timedelta(days=80)))  # 35 days after the latest
    assert still.problem_class.id == first.problem_class.id and still.problem_class.size == 3
    assert late.created and late.problem_class.id != first.problem_class.id and late.problem_class.size == 1


def test_another_building_or_category_is_another_class():
    town = Community()
    leak19 = town.blow(blown(T0))
    leak20 = town.blow(blown(T0, building="20"))
    fence19 = town.blow(blown(T0, category="fence_broken"))
    assert leak20.created and fence19.created
    assert len({leak19.problem_class.id, leak20.problem_class.id, fence19.problem_class.id}) == 3


def test_whistles_naming_a_grid_group_across_the_grids_buildings():
    town = Community()
    a = town.blow(blown(T0, building="3", grid="g-1"))
    b = town.blow(blown(T0 + timedelta(hours=1), building="4", grid="g-1"))
    other = town.blow(blown(T0 + timedelta(hours=2), building="4", grid="g-2"))
    assert b.problem_class.id == a.problem_class.id and b.problem_class.size == 2
    assert other.created


def test_the_threshold_raises_one_proactive_complex_whistle_once():
    town = Community(threshold=5)
    decisions = [town.blow(blown(T0 + timedelta(days=i))) for i in range(7)]
    raised = [d for d in decisions if d.proactive]
    assert [decisions.index(d) for d in raised] == [4]  # the 5th whistle, and not the 6th or 7th
    p = raised[0].proactive
    assert p.source == Source.proactive and p.tier == Tier.complex and p.category == "roof_leak"
    assert p.location.building == "19" and p.actor == "system:intake"
    assert p.description.startswith("Problem class: 5 complaints about roof_leak at building 19 within 30 days")
    assert "同类问题" in p.description
    final = decisions[-1].problem_class
    assert final.size == 7 and final.proactive_whistle_id == p.whistle_id and final.raised_at == T0 + timedelta(days=4)
    assert decisions[-1].events == list(decisions[-1].grouped) and len(decisions[-1].events) == 1
    assert decisions[4].events[-1] == p


def test_a_grid_class_raises_its_whistle_for_the_grid():
    town = Community(threshold=2)
    town.blow(blown(T0, grid="g-3"))
    decision = town.blow(blown(T0, building="5", grid="g-3"))
    assert decision.proactive.location.grid == "g-3"
    assert "grid g-3" in decision.proactive.description


def test_proactive_whistles_are_never_grouped():
    town = Community(threshold=2)
    town.blow(blown(T0))
    raised = town.blow(blown(T0)).proactive
    assert town.blow(raised) is None
    assert town.blow(blown(T0, source=Source.proactive)) is None
    assert [c.size for c in town.classes.values()] == [2]
