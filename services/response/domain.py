"""Response's pure rules: the summons lifecycle is a table; illegal moves are typed refusals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from shared.contracts import (
    Actor,
    Event,
    Refusal,
    SummonsOnSite,
    SummonsReported,
    SummonsResolved,
    WhistleClosed,
    WhistleVerified,
)


class SummonsState(StrEnum):
    issued = "issued"
    reported = "reported"  # 报到: acknowledged
    on_site = "on_site"
    resolved = "resolved"


class Action(StrEnum):
    report = "report"
    arrive = "arrive"
    resolve = "resolve"


TRANSITIONS: dict[tuple[SummonsState, Action], SummonsState] = {
    (SummonsState.issued, Action.report): SummonsState.reported,
    (SummonsState.reported, Action.arrive): SummonsState.on_site,
    (SummonsState.on_site, Action.resolve): SummonsState.resolved,
}

EVENT_OF: dict[Action, type[Event]] = {
    Action.report: SummonsReported,
    Action.arrive: SummonsOnSite,
    Action.resolve: SummonsResolved,
}

# why an illegal move is refused, in both languages
_ILLEGAL = {
    Action.report: "this summons was already reported / 已报到",
    Action.arrive: "report (acknowledge) before arriving on site / 请先报到再到场",
    Action.resolve: "arrive on site before resolving / 请先到场再办结",
}


@dataclass(frozen=True)
class Summons:
    id: UUID
    whistle_id: UUID
    responder_id: str
    state: SummonsState


def decide(summons: Summons, action: Action, actor: Actor, now: datetime, note: str | None = None) -> list[Event] | Refusal:
    """Apply a responder's move to its own summons, or refuse it with a reason code."""
    if actor.role != "responder" or actor.id != summons.responder_id:
        return Refusal(
            status=403, code="not_your_summons",
            reason="only the summoned responder may act on this summons / 只能处理本人的派单",
        )
    new_state = TRANSITIONS.get((summons.state, action))
    if new_state is None:
        return Refusal(
            status=409, code=f"illegal_{action.value}_from_{summons.state.value}", reason=_ILLEGAL[action],
        )
    event = EVENT_OF[action](
        occurred_at=now, whistle_id=summons.whistle_id, actor=str(actor),
        summons_id=summons.id, responder_id=summons.responder_id, note=note,
    )
    return [event]


def verify(
    whistle_id: UUID, closed: bool, states: list[SummonsState], actor: Actor, now: datetime,
    note: str | None = None, photo_url: str | None = None,
) -> list[Event] | Refusal:
    """The dispatcher verifies a whistle whose summons are all resolved; it is struck off (closed)."""
    if actor.role != "dispatcher":
        return Refusal(status=403, code="dispatcher_only", reason="only dispatchers verify / 只有社区调度员可以核验")
    if closed:
        return Refusal(status=409, code="already_closed", reason="the whistle is already struck off / 已销号")
    if not states:
        return Refusal(status=409, code="not_dispatched", reason="no responder has been summoned yet / 尚未派单")
    if any(s is not SummonsState.resolved for s in states):
        return Refusal(
            status=409, code="not_resolved", reason="every summons must be resolved first / 还有派单未办结",
        )
    common = dict(occurred_at=now, whistle_id=whistle_id, actor=str(actor))
    return [WhistleVerified(**common, note=note, photo_url=photo_url), WhistleClosed(**common)]
