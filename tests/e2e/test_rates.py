"""The three rates over HTTP, from a small history driven through the real system.

Only this test blows `safety_awareness` whistles, which route to the police station (d-police), so
its figures move only with what this test does; it still asserts changes from a first reading.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from tests.e2e.conftest import System, wait_for

UNIT = "d-police"
BEIJING = ZoneInfo("Asia/Shanghai")


def _period() -> dict[str, str]:
    """A few Beijing days around today: every deadline of this test falls inside, even near midnight."""
    today = datetime.now(BEIJING).date()
    return {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=2)).isoformat()}


def _rates(client: httpx.Client, unit: str, period: dict[str, str]) -> dict:
    r = client.get("/v1/rates", params={"unit": unit, **period})
    assert r.status_code == 200, r.text
    return r.json()


def _figures(rates: dict, name: str) -> tuple[int, int]:
    return rates[name]["numerator"], rates[name]["denominator"]


def _blow_for_police(system: System, tier: str) -> dict:
    whistle_id = system.blow(category="safety_awareness", tier=tier, source="grid_patrol",
                             description="anti-fraud visit / 防诈骗宣传", location={"building": "5"})
    summons = system.wait_summons(whistle_id)["summons"][0]
    assert summons["responder_id"] == UNIT
    return summons


def test_rates_count_reports_in_time_against_a_breach(system: System) -> None:
    period = _period()
    with system.client("supervisor") as supervisor:
        before = _rates(supervisor, UNIT, period)
    (r0, rd0), (s0, sd0), sat0 = (_figures(before, n) for n in ("response", "resolution", "satisfaction"))

    # two routine summons reported at once (deadline 6 s), one of them resolved; one urgent (2 s) left alone
    answered = [_blow_for_police(system, "routine") for _ in range(2)]
    _blow_for_police(system, "urgent")
    with system.client(UNIT) as police:
        for summons in answered:
            assert police.post(f"/v1/summons/{summons['id']}/report").status_code == 200
        for action in ("arrive", "resolve"):
            assert police.post(f"/v1/summons/{answered[0]['id']}/{action}").status_code == 200

    expected = {"response": (r0 + 2, rd0 + 3), "resolution": (s0 + 1, sd0 + 1), "satisfaction": sat0}
    with system.client("supervisor") as supervisor:
        # the ledger is eventually consistent, and the urgent summons counts once its deadline passes
        after = wait_for(
            lambda: (r := _rates(supervisor, UNIT, period)) and all(_figures(r, n) == f for n, f in expected.items())
            and r, timeout=30, what=f"d-police's rates to reach {expected}",
        )
    assert after["response"]["rate"] == round((r0 + 2) / (rd0 + 3), 4)
    assert after["unit"] == UNIT and after["period"] == {**period, "timezone": "Asia/Shanghai"}
    assert set(after["weights"]) == {"response", "resolution", "satisfaction"} and after["score"] is not None

    with system.client(UNIT) as police:  # a responder reads its own unit's rates…
        assert _figures(_rates(police, UNIT, period), "response") == expected["response"]
        # …but not another unit's, the community's or the ranking
        for params in ({"unit": "d-housing"}, {"unit": "community"}, {}):
            r = police.get("/v1/rates", params={**params, **period})
            assert r.status_code == 403 and r.json()["error"]["code"] == "not_your_unit", r.text
        assert police.get("/v1/rates/ranking", params=period).status_code == 403

    with system.client("dispatcher") as dispatcher:
        community = _rates(dispatcher, "community", period)
        assert community["response"]["denominator"] >= expected["response"][1]
        ranking = dispatcher.get("/v1/rates/ranking", params=period)
        assert ranking.status_code == 200, ranking.text
        board = ranking.json()
    units = [u["unit"] for u in board["units"]]
    assert UNIT in units and "community" not in units
    scores = [u["score"] for u in board["units"] if u["score"] is not None]
    assert scores == sorted(scores, reverse=True)
    red, black = [u["unit"] for u in board["red"]], [u["unit"] for u in board["black"]]
    assert len(red) == len(black) == min(5, len(scores) // 2)
    assert red == units[:len(red)] and black == units[len(scores) - len(black):len(scores)][::-1]
    assert not set(red) & set(black)


def test_a_month_reads_beijing_calendar_months(system: System) -> None:
    month = datetime.now(BEIJING).strftime("%Y-%m")
    with system.client("supervisor") as supervisor:
        rates = _rates(supervisor, "community", {"month": month})
        assert rates["period"]["from"] == f"{month}-01" and rates["period"]["timezone"] == "Asia/Shanghai"
        board = supervisor.get("/v1/rates/ranking", params={"month": month})
        assert board.status_code == 200 and {"red", "black", "units"} <= set(board.json())


def test_bad_periods_are_refused_naming_the_field(system: System) -> None:
    with system.client("supervisor") as supervisor:
        for path in ("/v1/rates", "/v1/rates/ranking"):
            for params, field in (
                ({"month": "2026-13"}, "month"), ({"month": "11-2026"}, "month"), ({}, "month"),
                ({"from": "2026-11-01"}, "to"), ({"from": "2026-11-31", "to": "2026-12-01"}, "from"),
                ({"from": "2026-12-01", "to": "2026-11-01"}, "to"),
            ):
                r = supervisor.get(path, params=params)
                assert r.status_code == 422, (path, params, r.text)
                assert r.json()["error"]["field"] == field, (path, params, r.text)
