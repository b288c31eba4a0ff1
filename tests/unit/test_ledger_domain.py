"""Ledger: a dispatched whistle is resolved only when every summons is."""

from __future__ import annotations

import pytest

from services.ledger.domain import SUMMONS_STATE, WHISTLE_STATUS, whistle_status
from services.response.domain import SummonsState
from shared.contracts import (
    SummonsOnSite,
    SummonsReported,
    SummonsResolved,
    SummonsReturned,
    SummonsTransferred,
    WhistleArbitrationNeeded,
    WhistleClosed,
    WhistleReopened,
    WhistleUnroutable,
    WhistleVerified,
)


@pytest.mark.parametrize(("states", "status"), [
    ([], "dispatched"),
    (["issued"], "dispatched"),
    (["reported"], "dispatched"),
    (["on_site"], "dispatched"),
    (["resolved"], "resolved"),
    (["resolved", "resolved", "resolved"], "resolved"),
    (["resolved", "on_site"], "dispatched"),
    (["issued", "resolved"], "dispatched"),
])
def test_whistle_status(states, status):
    assert whistle_status(states) == status


def test_whistle_status_accepts_the_response_states():
    assert whistle_status([SummonsState.resolved, SummonsState.resolved]) == "resolved"
    assert whistle_status([SummonsState.resolved, SummonsState.reported]) == "dispatched"


def test_summons_events_map_onto_the_response_states():
    assert SUMMONS_STATE == {
        SummonsReported: "reported", SummonsOnSite: "on_site", SummonsResolved: "resolved",
        SummonsReturned: "returned", SummonsTransferred: "transferred",
    }
    assert set(SUMMONS_STATE.values()) <= {s.value for s in SummonsState}


def test_whistle_events_move_the_status():
    assert WHISTLE_STATUS == {
        WhistleUnroutable: "unroutable", WhistleVerified: "verified", WhistleClosed: "closed",
        WhistleArbitrationNeeded: "awaiting_arbitration", WhistleReopened: "reopened",
    }
