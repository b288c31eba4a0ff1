"""The three rates on a fixed event history, checked against figures computed by hand.

Thirteen summons to three units over November and December 2026 (Beijing time):
d-housing (H), s-urban (U) and the party member m-zhang-wei (M). Times are Beijing local.

| whistle | summons | unit | report deadline | reported | resolve deadline | resolved | closed | follow-ups |
| W1  | s1  | H | 11-02 09:30 | 11-02 09:10 ok | 11-05 09:00 | 11-04 10:00 | 11-04 15:00 | 11-06 solved, satisfied |
| W2  | s2  | H | 11-10 11:00 | 11-10 12:00 late | 11-13 09:00 | 11-12 10:00 | 11-12 17:00 | 11-14 NOT solved, dissatisfied |
| W3  | s3  | H | 11-20 09:30 → paused → 12:00 | 11-20 11:00 ok | 11-23 09:00 | never | never | — |
| W4  | s4  | U | 11-05 09:30 | never | 11-08 09:00 | never | never | — |
| W5  | s5  | U | 11-15 09:30 | 11-15 09:20 ok | 11-18 09:00 | 11-20 10:00 late | 11-21 10:00 | 11-22 solved, basically satisfied |
| W6  | s6  | M | 11-25 10:00 | 11-25 09:50 ok | none | 11-26 10:00 | 11-26 18:00 | 11-28 solved, satisfied |
| W7  | s7  | H | 11-30T17:00Z = 12-01 01:00 | 12-01 00:30 ok | 12-03 09:00 | 12-02 10:00 | 12-02 16:00 | 12-05 solved, satisfied |
| W7  | s8  | U | 11-30 23:30 | 12-01 00:00 late | 12-03 09:00 | 12-02 11:00 | (W7) | (W7) |
| W8  | s9  | M | 12-03 10:00 | 12-03 09:40 ok | none | never | never | — |
| W9  | s10 | U | 12-08 10:00 | 12-08 11:00 late | 12-11 09:00 | 12-10 10:00 | 12-10 16:00 | 12-12 solved, dissatisfied |
| W10 | s11 | H | 12-15 10:00 | 12-15 09:30 ok | 12-18 09:00 | 12-17 10:00 | 12-17 16:00 | 12-20 NOT solved, basically; 12-27 solved, satisfied |
| W11 | s12 | H | 12-29 10:00 | never | 2027-01-02 09:00 | never | never | — |
| W12 | s13 | M | unknown (no sla.started) | 12-05 09:10 | unknown | never | never | — |

`NOW` is 2027-01-10 00:00, after everything, unless a test says otherwise.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import UUID, uuid5

import pytest

from services.ledger.rates import (
    BEIJING,
    DEFAULT_WEIGHTS,
    Facts,
    Period,
    PeriodError,
    SummonsFacts,
    check_weights,
    compute,
    facts_from_events,
    period_from,
    rank,
)
from shared.contracts import (
    Event,
    ResponderKind,
    SlaRescheduled,
    SlaStarted,
    SummonsIssued,
    SummonsReported,
    SummonsResolved,
    Tier,
    WhistleClosed,
    WhistleFollowedUp,
)

NS = UUID("00000000-0000-4000-8000-000000000000")
H, U, M = "d-housing", "s-urban", "m-zhang-wei"
NOW = datetime(2027, 1, 10, tzinfo=BEIJING)
NOV, DEC = Period.month("2026-11"), Period.month("2026-12")


def bj(month: int, day: int, hour: int = 9, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BEIJING)


def wid(n: int) -> UUID:
    return uuid5(NS, f"W{n}")


def sid(n: int) -> UUID:
    return uuid5(NS, f"s{n}")


def issued(s: int, w: int, unit: str, at: datetime, report: datetime | None, resolve: datetime | None = None,
           started: bool = True) -> list[Event]:
    kind = {"d": ResponderKind.department, "s": ResponderKind.section, "m": ResponderKind.member}[unit[0]]
    events: list[Event] = [SummonsIssued(
        occurred_at=at, whistle_id=wid(w), summons_id=sid(s), responder_id=unit, responder_kind=kind,
        responder_name=unit, category="roof_leak", tier=Tier.routine, actor="system:routing",
    )]
    if started:
        deadlines = {"report": report} | ({"resolve": resolve} if resolve else {})
        events.append(SlaStarted(occurred_at=at, whistle_id=wid(w), summons_id=sid(s), responder_id=unit,
                                 basis="wall", deadlines=deadlines, actor="system:escalation"))
    return events


def reported(s: int, w: int, unit: str, at: datetime) -> SummonsReported:
    return SummonsReported(occurred_at=at, whistle_id=wid(w), summons_id=sid(s), responder_id=unit,
                           actor=f"responder:{unit}")


def resolved(s: int, w: int, unit: str, at: datetime) -> SummonsResolved:
    return SummonsResolved(occurred_at=at, whistle_id=wid(w), summons_id=sid(s), responder_id=unit,
                           actor=f"responder:{unit}")


def rescheduled(s: int, w: int, at: datetime, deadline: datetime | None) -> SlaRescheduled:
    return SlaRescheduled(occurred_at=at, whistle_id=wid(w), summons_id=sid(s), clock="report", deadline=deadline,
                          reason="summons.extension_granted", actor="system:escalation")


def closed(w: int, at: datetime) -> WhistleClosed:
    return WhistleClosed(occurred_at=at, whistle_id=wid(w), actor="dispatcher:community-7")


def followed_up(w: int, at: datetime, solved: bool, satisfaction: str) -> WhistleFollowedUp:
    return WhistleFollowedUp(occurred_at=at, whistle_id=wid(w), solved=solved, satisfaction=satisfaction,
                             actor="dispatcher:community-7")


HISTORY: list[Event] = [
    *issued(1, 1, H, bj(11, 2), report=bj(11, 2, 9, 30), resolve=bj(11, 5)),
    reported(1, 1, H, bj(11, 2, 9, 10)),
    *issued(4, 4, U, bj(11, 5), report=bj(11, 5, 9, 30), resolve=bj(11, 8)),
    resolved(1, 1, H, bj(11, 4, 10)),
    closed(1, bj(11, 4, 15)),
    followed_up(1, bj(11, 6), solved=True, satisfaction="satisfied"),
    *issued(2, 2, H, bj(11, 10), report=bj(11, 10, 11), resolve=bj(11, 13)),
    reported(2, 2, H, bj(11, 10, 12)),
    resolved(2, 2, H, bj(11, 12, 10)),
    closed(2, bj(11, 12, 17)),
    followed_up(2, bj(11, 14), solved=False, satisfaction="dissatisfied"),
    *issued(5, 5, U, bj(11, 15), report=bj(11, 15, 9, 30), resolve=bj(11, 18)),
    reported(5, 5, U, bj(11, 15, 9, 20)),
    *issued(3, 3, H, bj(11, 20), report=bj(11, 20, 9, 30), resolve=bj(11, 23)),
    rescheduled(3, 3, bj(11, 20, 9, 5), None),  # extension asked: the clock pauses
    rescheduled(3, 3, bj(11, 20, 9, 20), bj(11, 20, 12)),  # granted: report by 12:00
    reported(3, 3, H, bj(11, 20, 11)),
    resolved(5, 5, U, bj(11, 20, 10)),
    closed(5, bj(11, 21, 10)),
    followed_up(5, bj(11, 22), solved=True, satisfaction="basically_satisfied"),
    *issued(6, 6, M, bj(11, 25), report=bj(11, 25, 10)),
    reported(6, 6, M, bj(11, 25, 9, 50)),
    resolved(6, 6, M, bj(11, 26, 10)),
    closed(6, bj(11, 26, 18)),
    followed_up(6, bj(11, 28), solved=True, satisfaction="satisfied"),
    # a joint whistle on the last evening of November; s7's deadline 17:00Z is already December in Beijing
    *issued(7, 7, H, bj(11, 30), report=datetime(2026, 11, 30, 17, tzinfo=UTC), resolve=bj(12, 3)),
    *issued(8, 7, U, bj(11, 30), report=bj(11, 30, 23, 30), resolve=bj(12, 3)),
    reported(7, 7, H, datetime(2026, 11, 30, 16, 30, tzinfo=UTC)),
    reported(8, 7, U, datetime(2026, 11, 30, 16, tzinfo=UTC)),
    resolved(7, 7, H, bj(12, 2, 10)),
    resolved(8, 7, U, bj(12, 2, 11)),
    closed(7, bj(12, 2, 16)),
    *issued(9, 8, M, bj(12, 3), report=bj(12, 3, 10)),
    reported(9, 8, M, bj(12, 3, 9, 40)),
    followed_up(7, bj(12, 5), solved=True, satisfaction="satisfied"),
    *issued(13, 12, M, bj(12, 5), report=None, started=False),
    reported(13, 12, M, bj(12, 5, 9, 10)),
    *issued(10, 9, U, bj(12, 8), report=bj(12, 8, 10), resolve=bj(12, 11)),
    reported(10, 9, U, bj(12, 8, 11)),
    resolved(10, 9, U, bj(12, 10, 10)),
    closed(9, bj(12, 10, 16)),
    followed_up(9, bj(12, 12), solved=True, satisfaction="dissatisfied"),
    *issued(11, 10, H, bj(12, 15), report=bj(12, 15, 10), resolve=bj(12, 18)),
    reported(11, 10, H, bj(12, 15, 9, 30)),
    resolved(11, 10, H, bj(12, 17, 10)),
    closed(10, bj(12, 17, 16)),
    followed_up(10, bj(12, 20), solved=False, satisfaction="basically_satisfied"),
    followed_up(10, bj(12, 27), solved=True, satisfaction="satisfied"),  # fixed after all
    *issued(12, 11, H, bj(12, 28), report=bj(12, 29, 10), resolve=bj(1, 2, year=2027)),
]
FACTS = facts_from_events(HISTORY)


def figures(unit: str, period: Period, now: datetime = NOW, weights=DEFAULT_WEIGHTS) -> tuple:
    r = compute(unit, FACTS, period, now, weights)
    return (r.response.numerator, r.response.denominator), (r.resolution.numerator, r.resolution.denominator), \
        (r.satisfaction.numerator, r.satisfaction.denominator)


# --- facts from events ------------------------------------------------------------


def test_the_history_folds_into_facts_with_the_latest_announced_deadline():
    by_id = {s.summons_id: s for s in FACTS.summons}
    assert len(by_id) == 13
    s3 = by_id[sid(3)]
    assert s3.report_deadline == bj(11, 20, 12)  # the pause (None) did not erase it; the extension replaced it
    assert (s3.reported_at, s3.resolve_deadline, s3.resolved_at) == (bj(11, 20, 11), bj(11, 23), None)
    assert by_id[sid(6)].resolve_deadline is None
    assert by_id[sid(13)].report_deadline is None and by_id[sid(13)].reported_at == bj(12, 5, 9, 10)
    assert {w.whistle_id: w.closed_at for w in FACTS.whistles}[wid(7)] == bj(12, 2, 16)
    assert len(FACTS.followups) == 8


# --- November ------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "expected"), [
    # response: s1 ok, s2 late, s3 ok (by the extended 12:00); s7's deadline is December  → 2/3
    # resolution: s1 resolved and solved; s2 resolved but "not solved"; s3 overdue 11-23    → 1/3
    # satisfaction: W1 satisfied, W2 dissatisfied                                            → 1/2
    (H, ((2, 3), (1, 3), (1, 2))),
    # response: s4 never, s5 ok, s8 late (12-01 00:00 > 11-30 23:30)                       → 1/3
    # resolution: s4 overdue 11-08; s5 resolved late but in November and solved (once)     → 1/2
    # satisfaction: W5 basically satisfied                                                   → 1/1
    (U, ((1, 3), (1, 2), (1, 1))),
    # s6: in time; resolved without a resolve deadline, solved; W6 satisfied
    (M, ((1, 1), (1, 1), (1, 1))),
    # response: 2 + 1 + 1 of 3 + 3 + 1                                                      → 4/7
    # resolution by whistle: closed W1 ok, W2 not solved, W5 ok, W6 ok; overdue open W3, W4 → 3/6
    # satisfaction: W1, W5, W6 pleased, W2 not                                               → 3/4
    ("community", ((4, 7), (3, 6), (3, 4))),
])
def test_november_rates(unit, expected):
    assert figures(unit, NOV) == expected


@pytest.mark.parametrize(("unit", "score"), [
    (H, 0.1 * 2 / 3 + 0.45 * 1 / 3 + 0.45 * 1 / 2),  # 0.4417
    (U, 0.1 * 1 / 3 + 0.45 * 1 / 2 + 0.45 * 1),  # 0.7083
    (M, 1.0),
    ("community", 0.1 * 4 / 7 + 0.45 * 3 / 6 + 0.45 * 3 / 4),  # 0.6196
])
def test_november_scores(unit, score):
    rates = compute(unit, FACTS, NOV, NOW)
    assert rates.score == pytest.approx(score)
    assert rates.as_dict()["score"] == round(score, 4)


# --- December ------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "expected"), [
    # response: s7 ok (deadline 12-01 01:00 Beijing), s11 ok, s12 never                     → 2/3
    # resolution: s7 solved; s11 solved (the latest follow-up, 12-27, says solved)          → 2/2
    # satisfaction: W7 satisfied, W10 basically satisfied then satisfied                    → 3/3
    (H, ((2, 3), (2, 2), (3, 3))),
    # response: s10 late; resolution: s8 and s10 resolved, solved; W7 satisfied, W9 not
    (U, ((0, 1), (2, 2), (1, 2))),
    # s9 in time; s13 has no known deadline (not counted); nothing resolved, no follow-ups
    (M, ((1, 1), (0, 0), (0, 0))),
    # response 2 + 0 + 1 of 5; closed W7, W9, W10 all solved; 3 of 4 follow-ups pleased
    ("community", ((3, 5), (3, 3), (3, 4))),
])
def test_december_rates(unit, expected):
    assert figures(unit, DEC) == expected


def test_december_scores_renormalise_over_the_rates_present():
    assert compute(H, FACTS, DEC, NOW).score == pytest.approx(0.1 * 2 / 3 + 0.45 + 0.45)  # 0.9667
    assert compute(U, FACTS, DEC, NOW).score == pytest.approx(0.45 * 1 + 0.45 * 0.5)  # 0.675
    # only the response rate exists: it is the whole score, not 10 % of it
    m = compute(M, FACTS, DEC, NOW)
    assert (m.resolution.value, m.satisfaction.value, m.score) == (None, None, 1.0)
    assert compute("community", FACTS, DEC, NOW).score == pytest.approx(0.1 * 0.6 + 0.45 + 0.45 * 0.75)  # 0.8475


def test_a_date_range_spanning_both_months_adds_them_up():
    both = period_from(start="2026-11-01", end="2027-01-01")
    # H: response 2/3 + 2/3; resolution 1/3 + 2/2; satisfaction 1/2 + 3/3
    assert figures(H, both) == ((4, 6), (3, 5), (4, 5))


# --- as of `now` ---------------------------------------------------------------


def test_a_deadline_not_yet_passed_and_not_met_is_not_counted():
    # 12-29 09:00: s12's report deadline (10:00) is still ahead, so H's December response is 2/2
    assert figures(H, DEC, now=bj(12, 29, 9))[0] == (2, 2)
    assert figures(H, DEC, now=bj(12, 29, 10))[0] == (2, 3)  # at the deadline it counts against


def test_the_latest_follow_up_known_decides_whether_a_resolution_counts():
    # 12-21: W10's only follow-up says "not solved", so s11 counts against H
    assert figures(H, DEC, now=bj(12, 21))[1] == (1, 2)
    assert figures(H, DEC, now=bj(12, 28))[1] == (2, 2)  # the 12-27 follow-up says solved


def test_a_late_resolution_counts_against_the_month_of_its_deadline_and_for_the_month_it_came():
    late = facts_from_events([
        *issued(1, 1, H, bj(11, 27), report=bj(11, 27, 10), resolve=bj(11, 30)),
        reported(1, 1, H, bj(11, 27, 9, 30)),
        resolved(1, 1, H, bj(12, 2)),
    ])
    assert compute(H, late, NOV, NOW).resolution.as_dict() == {"rate": 0.0, "numerator": 0, "denominator": 1}
    assert compute(H, late, DEC, NOW).resolution.as_dict() == {"rate": 1.0, "numerator": 1, "denominator": 1}


# --- nulls, boundaries, weights ------------------------------------------------


def test_a_unit_with_nothing_counted_has_null_rates_not_zero():
    rates = compute("d-police", FACTS, NOV, NOW)
    assert not rates.counted and rates.score is None
    for name in ("response", "resolution", "satisfaction"):
        assert rates.as_dict()[name] == {"rate": None, "numerator": 0, "denominator": 0}
    assert compute("community", FACTS, Period.month("2026-10"), NOW).score is None


def test_month_boundaries_are_beijing_midnight():
    assert (NOV.start, NOV.end) == (date(2026, 11, 1), date(2026, 12, 1))
    assert NOV.begins == datetime(2026, 10, 31, 16, tzinfo=UTC)
    assert datetime(2026, 11, 30, 15, 59, 59, tzinfo=UTC) in NOV  # 23:59:59 in Beijing
    assert datetime(2026, 11, 30, 16, tzinfo=UTC) not in NOV and datetime(2026, 11, 30, 16, tzinfo=UTC) in DEC
    assert datetime(2026, 11, 30, 17, tzinfo=UTC) in DEC  # still November in UTC, 01:00 on 1 December in Beijing
    assert Period.month("2026-12").end == date(2027, 1, 1)
    # the s7 / s8 pair above: 17:00Z fell into December's response rate, 15:30Z into November's
    assert figures(H, NOV)[0][1] == 3 and figures(H, DEC)[0][1] == 3


def test_weights_are_configurable():
    assert compute(H, FACTS, NOV, NOW, check_weights({"response": 1})).score == pytest.approx(2 / 3)
    both = check_weights({"resolution": 1, "satisfaction": 1})
    assert compute(H, FACTS, NOV, NOW, both).score == pytest.approx((1 / 3 + 1 / 2) / 2)
    # a unit whose only rate weighs nothing has no score
    assert compute(M, FACTS, DEC, NOW, check_weights({"satisfaction": 1})).score is None


@pytest.mark.parametrize("weights", [{"speed": 1}, {"response": -1, "resolution": 1}, {"response": 0}, {}])
def test_bad_weights_are_refused(weights):
    with pytest.raises(ValueError):
        check_weights(weights)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"month": "2026-13"}, "month"), ({"month": "2026-1"}, "month"), ({"month": "November"}, "month"),
    ({}, "month"), ({"start": "2026-11-01"}, "to"), ({"end": "2026-12-01"}, "from"),
    ({"start": "2026-02-30", "end": "2026-03-01"}, "from"), ({"start": "2026-12-01", "end": "2026-11-01"}, "to"),
    ({"month": "2026-11", "start": "2026-11-01", "end": "2026-12-01"}, "month"),
])
def test_bad_periods_name_the_field(kwargs, field):
    with pytest.raises(PeriodError) as err:
        period_from(**kwargs)
    assert err.value.field == field


# --- ranking -------------------------------------------------------------------


def test_november_ranking_puts_the_best_on_the_red_list_and_the_worst_on_the_black():
    ranking = rank(FACTS, NOV, NOW)
    assert [r.unit for r in ranking.units] == [M, U, H]  # 1.0, 0.7083, 0.4417
    # three units: one on each list, the middle one on neither
    assert ([r.unit for r in ranking.red], [r.unit for r in ranking.black]) == ([M], [H])
    assert "community" not in {r.unit for r in ranking.units}


def test_december_ranking():
    ranking = rank(FACTS, DEC, NOW)
    assert [(r.unit, round(r.score, 4)) for r in ranking.units] == [(M, 1.0), (H, 0.9667), (U, 0.675)]
    assert ([r.unit for r in ranking.red], [r.unit for r in ranking.black]) == ([M], [U])


def test_a_month_with_nothing_has_empty_lists():
    ranking = rank(FACTS, Period.month("2026-10"), NOW)
    assert (ranking.units, ranking.red, ranking.black) == ((), (), ())


def test_red_and_black_lists_hold_five_each_with_ties_broken_by_unit_id():
    on_time = {"a": 4, "b": 3, "c": 3, "d": 2, "e": 2, "f": 2, "g": 1, "h": 1, "i": 0, "j": 0, "k": 0, "l": 4}
    deadline = bj(11, 10, 10)
    facts = Facts(summons=tuple(
        SummonsFacts(uuid5(NS, f"{unit}{n}"), uuid5(NS, f"{unit}{n}w"), unit, report_deadline=deadline,
                     reported_at=bj(11, 10, 9 if n < good else 11))
        for unit, good in on_time.items() for n in range(4)
    ))
    ranking = rank(facts, NOV, NOW)
    assert [r.unit for r in ranking.units] == list("albcdefghijk")
    assert [r.unit for r in ranking.red] == list("albcd")  # d beats e and f on its id
    assert [r.unit for r in ranking.black] == list("kjihg")  # worst first
    assert ranking.as_dict()["red"][0]["response"] == {"rate": 1.0, "numerator": 4, "denominator": 4}


def test_a_returned_summons_is_left_out_and_its_replacement_counts():
    from shared.contracts import SummonsReturned

    history = [
        *issued(90, 90, "s-urban", bj(11, 3, 9), report=bj(11, 3, 11)),
        SummonsReturned(occurred_at=bj(11, 3, 10), whistle_id=wid(90), summons_id=sid(90), responder_id="s-urban",
                        reason_code="wrong_area", actor="responder:s-urban"),
        *issued(91, 90, "d-enforcement", bj(11, 3, 10), report=bj(11, 3, 12)),
        reported(91, 90, "d-enforcement", bj(11, 3, 11)),
    ]
    facts = facts_from_events(history)
    assert [s.responder_id for s in facts.summons] == ["d-enforcement"]
    rates = compute("d-enforcement", facts, NOV, NOW).as_dict()
    assert rates["response"] == {"rate": 1.0, "numerator": 1, "denominator": 1}
    assert compute("s-urban", facts, NOV, NOW).as_dict()["response"]["denominator"] == 0


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"month": "0000-01"}, "month"), ({"month": "9999-12"}, "month"), ({"month": "0001-01"}, "month"),
    ({"start": "0001-01-01", "end": "0001-01-02"}, "from"), ({"start": "2026-11-01", "end": "9999-12-31"}, "to"),
])
def test_a_period_at_the_ends_of_the_calendar_names_the_field(kwargs, field):
    """Year 0 or 10,000 is no date, and a Beijing midnight of 0001-01-01 is no UTC time Postgres has (503s)."""
    with pytest.raises(PeriodError) as err:
        period_from(**kwargs)
    assert err.value.field == field
