"""Response's pure rules: the summons lifecycle is a table; illegal moves are typed refusals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from shared.contracts import (
    SUPERSEDED,
    Actor,
    Event,
    ExtensionGranted,
    ExtensionRefused,
    ExtensionRequested,
    Refusal,
    SummonsMove,
    SummonsOnSite,
    SummonsPaused,
    SummonsReported,
    SummonsResolved,
    SummonsResumed,
    SummonsReturned,
    SummonsState,
    SummonsTransferred,
    WhistleClosed,
    WhistleFollowedUp,
    WhistleReopened,
    WhistleVerified,
)

S, A = SummonsState, SummonsMove
# waiting on the resident holds the clocks: a sub-state of reported / on_site, not a move of the lifecycle
WAITS = frozenset({A.pause, A.resume})
TRANSITIONS: dict[tuple[SummonsState, SummonsMove], SummonsState] = {
    (S.issued, A.report): S.reported,
    (S.reported, A.arrive): S.on_site,
    (S.on_site, A.resolve): S.resolved,
    # a summons can be given back or handed on until its responder is on site
    (S.issued, A.return_): S.returned,
    (S.reported, A.return_): S.returned,
    (S.issued, A.transfer): S.transferred,
    (S.reported, A.transfer): S.transferred,
}

EVENT_OF: dict[SummonsMove, type[Event]] = {
    A.report: SummonsReported,
    A.arrive: SummonsOnSite,
    A.resolve: SummonsResolved,
    A.return_: SummonsReturned,
    A.transfer: SummonsTransferred,
}

# why an illegal move is refused, in both languages
_ILLEGAL = {
    A.report: "this summons was already reported / 已报到",
    A.arrive: "report (acknowledge) before arriving on site / 请先报到再到场",
    A.resolve: "arrive on site before resolving / 请先到场再办结",
    A.return_: "only a summons not yet on site can be returned / 到场后不能退单",
    A.transfer: "only a summons not yet on site can be transferred / 到场后不能转派",
}

WAIT_TRANSITIONS: dict[tuple[bool, SummonsMove], bool] = {(False, A.pause): True, (True, A.resume): False}
PAUSABLE = frozenset({SummonsState.reported, SummonsState.on_site})
# a granted deadline is counted to in working time, day by day, and armed as a timer: years ahead is no deadline
MAX_EXTENSION = timedelta(days=90)  # as shared/commands.ExtensionAsk (the gateway refuses first)


@dataclass(frozen=True)
class Summons:
    id: UUID
    whistle_id: UUID
    responder_id: str
    state: SummonsState
    waiting: bool = False
    extension_clock: str | None = None  # the clock of a pending extension request
    role: str = "lead"
    arbitrated: bool = False  # chosen by a supervisor (审定): cannot be returned


def _not_owner(summons: Summons, actor: Actor) -> Refusal | None:
    if actor.role != "responder" or actor.id != summons.responder_id:
        return Refusal(
            status=403, code="not_your_summons",
            reason="only the summoned responder may act on this summons / 只能处理本人的派单",
        )
    return None


def decide(
    summons: Summons, action: SummonsMove, actor: Actor, now: datetime, note: str | None = None, **details,
) -> list[Event] | Refusal:
    """Apply a responder's move to its own summons, or refuse it with a reason code.

    `details` carry what a return (reason_code, reason) or a transfer (to_responder_id, reason) needs;
    pause and resume are waits (`wait`), which change no state.
    """
    if action in WAITS:
        return wait(summons, action, actor, now, note)
    if refusal := _not_owner(summons, actor):
        return refusal
    if action is A.return_ and summons.arbitrated:
        return Refusal(status=409, code="arbitrated", reason="a supervisor assigned this; it cannot be returned / 已审定，不能退单")
    if action is A.transfer and details.get("to_responder_id") == summons.responder_id:
        return Refusal(status=422, code="transfer_to_self", field="to_responder_id",
                       reason="transfer to someone else / 不能转派给自己")
    new_state = TRANSITIONS.get((summons.state, action))
    if new_state is None:
        return Refusal(
            status=409, code=f"illegal_{action.value}_from_{summons.state.value}", reason=_ILLEGAL[action],
        )
    common = dict(occurred_at=now, whistle_id=summons.whistle_id, actor=str(actor),
                  summons_id=summons.id, responder_id=summons.responder_id)
    # moving on ends a wait on the resident: the clocks resume first
    resumed = [SummonsResumed(**common)] if summons.waiting else []
    if action in (A.return_, A.transfer):
        details["role"] = summons.role
    return [*resumed, EVENT_OF[action](**common, note=note, **details)]


def wait(summons: Summons, move: SummonsMove, actor: Actor, now: datetime, note: str | None = None) -> list[Event] | Refusal:
    """Start or end waiting on the resident; the clocks hold meanwhile."""
    if refusal := _not_owner(summons, actor):
        return refusal
    if summons.state not in PAUSABLE:
        return Refusal(status=409, code=f"illegal_{move.value}_from_{summons.state.value}",
                       reason="only a reported summons can wait on the resident / 报到后才能挂起等待")
    if (summons.waiting, move) not in WAIT_TRANSITIONS:
        code = "already_waiting" if summons.waiting else "not_waiting"
        return Refusal(status=409, code=code, reason="the summons is already in that state / 状态未变")
    common = dict(occurred_at=now, whistle_id=summons.whistle_id, actor=str(actor),
                  summons_id=summons.id, responder_id=summons.responder_id, note=note)
    return [SummonsPaused(**common) if move is A.pause else SummonsResumed(**common)]


def request_extension(
    summons: Summons, clock: str, new_deadline: datetime, reason: str, actor: Actor, now: datetime,
) -> list[Event] | Refusal:
    """延期: ask a supervisor for a later deadline; the clocks hold until it is decided."""
    if refusal := _not_owner(summons, actor):
        return refusal
    if summons.state is SummonsState.resolved:
        return Refusal(status=409, code="already_resolved", reason="the summons is resolved / 已办结")
    if summons.extension_clock is not None:
        return Refusal(status=409, code="extension_pending", reason="an extension is already pending / 已有延期申请待审")
    if new_deadline <= now:
        return Refusal(status=422, code="deadline_in_past", field="new_deadline",
                       reason="the new deadline must be in the future / 新时限须晚于现在")
    if new_deadline > now + MAX_EXTENSION:
        return Refusal(status=422, code="deadline_too_far", field="new_deadline",
                       reason="an extension reaches at most 90 days ahead / 延期不得超过90天")
    return [ExtensionRequested(
        occurred_at=now, whistle_id=summons.whistle_id, actor=str(actor), summons_id=summons.id,
        responder_id=summons.responder_id, clock=clock, new_deadline=new_deadline, reason=reason,
    )]


def decide_extension(
    summons: Summons, grant: bool, new_deadline: datetime | None, actor: Actor, now: datetime, note: str | None = None,
) -> list[Event] | Refusal:
    """A supervisor grants (the deadline moves) or refuses (the old one stands) a pending extension."""
    if actor.role != "supervisor":
        return Refusal(status=403, code="supervisor_only", reason="only supervisors decide extensions / 仅督办可审批延期")
    if summons.extension_clock is None:
        return Refusal(status=409, code="no_extension_pending", reason="no extension is pending / 无待审延期申请")
    common = dict(occurred_at=now, whistle_id=summons.whistle_id, actor=str(actor), summons_id=summons.id,
                  responder_id=summons.responder_id, clock=summons.extension_clock, note=note)
    if grant:
        return [ExtensionGranted(**common, new_deadline=new_deadline)]
    return [ExtensionRefused(**common)]


def verify(
    whistle_id: UUID, closed: bool, states: list[SummonsState], actor: Actor, now: datetime,
    note: str | None = None, photo_url: str | None = None,
) -> list[Event] | Refusal:
    """The dispatcher verifies a whistle whose summons are all resolved; it is struck off (closed).

    Returned and transferred summons do not count: whoever holds the work now must resolve it.
    """
    states = [s for s in states if s not in SUPERSEDED]
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


DISSATISFIED = "dissatisfied"


def link_refusal(created_at: datetime, used_at: datetime | None, closed: bool, latest: bool, now: datetime,
                 ttl_s: float) -> Refusal | None:
    """Why a resident's follow-up link can no longer be answered, or None: dead since its whistle was reopened
    (410, answered or not: a reopened whistle is asked again, with a new link, when verified), once answered,
    or past its life."""
    if not closed or not latest:
        return Refusal(status=410, code="link_dead", reason="the whistle was reopened; this link no longer works"
                       " / 该问题已重新办理，此链接已失效")
    if used_at is not None:
        return Refusal(status=409, code="already_answered", reason="this link was already used / 已回访，感谢您的评价")
    if (now - created_at).total_seconds() >= ttl_s:
        return Refusal(status=410, code="link_expired", reason="this link has expired / 链接已过期")
    return None


ALREADY_FOLLOWED_UP = Refusal(
    status=409, code="already_followed_up",
    reason="this closure was already followed up; a whistle is asked again only after it is reopened and struck"
           " off again / 本次销号已回访，重办并再次销号后方可再次回访")


def follow_up(
    whistle_id: UUID, closed: bool, lead_responder_id: str | None, solved: bool, satisfaction: str,
    actor: Actor, now: datetime, note: str | None = None, *, followed_up: bool = False,
) -> list[Event] | Refusal:
    """回访: the resident's answer; not solved or dissatisfied reopens the whistle (重办) to the same lead.

    A dispatcher records it from a phone call, or the resident answers through a one-time link; either way
    once per closure (`followed_up`: this closure has its answer), so the satisfaction rate counts it once.
    """
    if actor.role not in ("dispatcher", "resident"):
        return Refusal(status=403, code="dispatcher_only", reason="only dispatchers record follow-ups / 只有调度员可以回访")
    if not closed:
        return Refusal(status=409, code="not_closed", reason="follow up after the whistle is verified and closed / 核验销号后再回访")
    if followed_up:
        return ALREADY_FOLLOWED_UP
    common = dict(occurred_at=now, whistle_id=whistle_id, actor=str(actor))
    events: list[Event] = [WhistleFollowedUp(**common, solved=solved, satisfaction=satisfaction, note=note)]
    if (not solved or satisfaction == DISSATISFIED) and lead_responder_id:
        why = "not solved / 未解决" if not solved else "resident dissatisfied / 居民不满意"
        events.append(WhistleReopened(**common, lead_responder_id=lead_responder_id, reason=why))
    return events
