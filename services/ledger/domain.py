"""Ledger's pure rules: how each event moves a whistle's status and its summons' states."""

from __future__ import annotations

from shared.contracts import (
    SUPERSEDED,
    Event,
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

# open → dispatched → resolved → verified → closed (挂账 … 销号); unroutable waits for a supervisor
WHISTLE_STATUS: dict[type[Event], str] = {
    WhistleUnroutable: "unroutable",
    WhistleArbitrationNeeded: "awaiting_arbitration",
    WhistleReopened: "reopened",
    WhistleVerified: "verified",
    WhistleClosed: "closed",
}

SUMMONS_STATE: dict[type[Event], str] = {
    SummonsReported: "reported",
    SummonsOnSite: "on_site",
    SummonsResolved: "resolved",
    SummonsReturned: "returned",
    SummonsTransferred: "transferred",
}


def whistle_status(summons_states: list[str]) -> str:
    """A dispatched whistle is resolved once every summons still in play is resolved."""
    summons_states = [s for s in summons_states if s not in SUPERSEDED]
    if summons_states and all(s == "resolved" for s in summons_states):
        return "resolved"
    return "dispatched"
