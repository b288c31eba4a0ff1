"""The summons lifecycle table, ownership, and the dispatcher's verification."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from services.response.domain import TRANSITIONS, WAITS, Summons, SummonsState, decide, request_extension, verify
from shared.contracts import (
    Actor,
    Refusal,
    SummonsMove,
    SummonsOnSite,
    SummonsReported,
    SummonsResolved,
    SummonsResumed,
    SummonsReturned,
    SummonsTransferred,
    WhistleClosed,
    WhistleVerified,
)

NOW = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
WHISTLE_ID = UUID("0195f0a0-0000-7000-8000-000000000001")
SUMMONS_ID = UUID("0195f0a0-0000-7000-8000-000000000002")
RESPONDER = "m-zhang-wei"
OWNER = Actor(role="responder", id=RESPONDER)
DISPATCHER = Actor(role="dispatcher", id="grid-leader")

S, A = SummonsState, SummonsMove
# the moves of the lifecycle; pause and resume (waiting on the resident) change no state
LIFECYCLE = [A.report, A.arrive, A.resolve, A.return_, A.transfer]
LEGAL: dict[tuple[SummonsState, SummonsMove], SummonsState] = {
    (S.issued, A.report): S.reported,
    (S.reported, A.arrive): S.on_site,
    (S.on_site, A.resolve): S.resolved,
    (S.issued, A.return_): S.returned,
    (S.reported, A.return_): S.returned,
    (S.issued, A.transfer): S.transferred,
    (S.reported, A.transfer): S.transferred,
}
# every other (state, action) pair is illegal
EXPECTED: dict[tuple[SummonsState, SummonsMove], SummonsState | None] = {
    pair: LEGAL.get(pair) for pair in itertools.product(SummonsState, LIFECYCLE)
}
EVENT_FOR = {
    A.report: SummonsReported, A.arrive: SummonsOnSite, A.resolve: SummonsResolved,
    A.return_: SummonsReturned, A.transfer: SummonsTransferred,
}
# what a return or a transfer must say
DETAILS = {
    A.return_: {"reason_code": "wrong_area", "reason": "not our grid"},
    A.transfer: {"to_responder_id": "d-enforcement", "reason": "night noise"},
}
ALL_PAIRS = list(itertools.product(SummonsState, LIFECYCLE))


def summons(state: SummonsState, responder_id: str = RESPONDER) -> Summons:
    return Summons(id=SUMMONS_ID, whistle_id=WHISTLE_ID, responder_id=responder_id, state=state)


def test_expected_table_covers_every_pair():
    assert set(EXPECTED) == set(ALL_PAIRS)


def test_every_move_is_of_the_lifecycle_or_a_wait():
    assert set(LIFECYCLE) | WAITS == set(SummonsMove) and not set(LIFECYCLE) & WAITS


@pytest.mark.parametrize(("state", "action"), ALL_PAIRS)
def test_transition_table_matches_expected(state, action):
    assert TRANSITIONS.get((state, action)) == EXPECTED[(state, action)]


def test_table_has_no_entries_beyond_the_legal_moves():
    assert TRANSITIONS == LEGAL


def test_a_return_carries_its_reason_and_role_and_an_arbitrated_summons_cannot_be_returned():
    [event] = decide(summons(S.reported), A.return_, OWNER, NOW, **DETAILS[A.return_])
    assert (event.reason_code, event.reason, event.role) == ("wrong_area", "not our grid", "lead")
    arbitrated = Summons(id=SUMMONS_ID, whistle_id=WHISTLE_ID, responder_id=RESPONDER, state=S.issued, arbitrated=True)
    out = decide(arbitrated, A.return_, OWNER, NOW, **DETAILS[A.return_])
    assert isinstance(out, Refusal) and (out.status, out.code) == (409, "arbitrated")
    assert isinstance(decide(arbitrated, A.report, OWNER, NOW), list)  # it can still be answered


def test_a_transfer_names_its_target_and_not_oneself():
    [event] = decide(summons(S.issued), A.transfer, OWNER, NOW, **DETAILS[A.transfer])
    assert event.to_responder_id == "d-enforcement" and event.reason == "night noise"
    out = decide(summons(S.issued), A.transfer, OWNER, NOW, to_responder_id=RESPONDER, reason="x")
    assert isinstance(out, Refusal) and (out.status, out.field) == (422, "to_responder_id")


def test_returning_while_waiting_on_the_resident_resumes_first():
    waiting = Summons(id=SUMMONS_ID, whistle_id=WHISTLE_ID, responder_id=RESPONDER, state=S.reported, waiting=True)
    out = decide(waiting, A.return_, OWNER, NOW, **DETAILS[A.return_])
    assert [type(e) for e in out] == [SummonsResumed, SummonsReturned]


@pytest.mark.parametrize(("state", "action"), [p for p in ALL_PAIRS if EXPECTED[p] is not None])
def test_legal_move_emits_its_event(state, action):
    out = decide(summons(state), action, OWNER, NOW, note="on my way", **DETAILS.get(action, {}))
    assert isinstance(out, list) and len(out) == 1
    event = out[0]
    assert type(event) is EVENT_FOR[action]
    assert event.summons_id == SUMMONS_ID
    assert event.whistle_id == WHISTLE_ID
    assert event.correlation_id == WHISTLE_ID
    assert event.responder_id == RESPONDER
    assert event.actor == f"responder:{RESPONDER}"
    assert event.occurred_at == NOW
    assert event.note == "on my way"


@pytest.mark.parametrize(("state", "action"), [p for p in ALL_PAIRS if EXPECTED[p] is None])
def test_illegal_move_is_a_409_refusal_with_its_code(state, action):
    out = decide(summons(state), action, OWNER, NOW, **DETAILS.get(action, {}))
    assert isinstance(out, Refusal)
    assert out.status == 409
    assert out.code == f"illegal_{action.value}_from_{state.value}"
    assert out.reason


def test_note_defaults_to_none():
    [event] = decide(summons(S.issued), A.report, OWNER, NOW)
    assert event.note is None


def test_full_walk_issued_to_resolved():
    state = S.issued
    kinds = []
    for action in (A.report, A.arrive, A.resolve):
        [event] = decide(summons(state), action, OWNER, NOW)
        kinds.append(type(event))
        state = TRANSITIONS[(state, action)]
    assert kinds == [SummonsReported, SummonsOnSite, SummonsResolved]
    assert state is S.resolved


@pytest.mark.parametrize("state", list(SummonsState))
def test_another_responder_is_refused_403(state):
    out = decide(summons(state), A.report, Actor(role="responder", id="m-li-na"), NOW)
    assert isinstance(out, Refusal)
    assert (out.status, out.code) == (403, "not_your_summons")


@pytest.mark.parametrize("role", ["dispatcher", "supervisor", "system"])
def test_non_responder_with_the_same_id_is_refused_403(role):
    # the id matches, the role does not: ownership is by role *and* id
    out = decide(summons(S.issued), A.report, Actor(role=role, id=RESPONDER), NOW)
    assert isinstance(out, Refusal)
    assert (out.status, out.code) == (403, "not_your_summons")


def test_ownership_is_checked_before_legality():
    out = decide(summons(S.resolved), A.report, DISPATCHER, NOW)
    assert isinstance(out, Refusal) and out.status == 403


# --- verify -----------------------------------------------------------------


@pytest.mark.parametrize("role", ["responder", "supervisor", "system"])
def test_verify_is_dispatcher_only(role):
    out = verify(WHISTLE_ID, False, [S.resolved], Actor(role=role, id="x"), NOW)
    assert isinstance(out, Refusal)
    assert (out.status, out.code) == (403, "dispatcher_only")


def test_verify_already_closed():
    out = verify(WHISTLE_ID, True, [S.resolved], DISPATCHER, NOW)
    assert isinstance(out, Refusal)
    assert (out.status, out.code) == (409, "already_closed")


def test_verify_not_dispatched():
    out = verify(WHISTLE_ID, False, [], DISPATCHER, NOW)
    assert isinstance(out, Refusal)
    assert (out.status, out.code) == (409, "not_dispatched")


@pytest.mark.parametrize("unresolved", [S.issued, S.reported, S.on_site])
def test_verify_refuses_while_any_summons_is_unresolved(unresolved):
    out = verify(WHISTLE_ID, False, [S.resolved, unresolved, S.resolved], DISPATCHER, NOW)
    assert isinstance(out, Refusal)
    assert (out.status, out.code) == (409, "not_resolved")


@pytest.mark.parametrize("count", [1, 3])
def test_verify_all_resolved_verifies_then_closes(count):
    out = verify(
        WHISTLE_ID, False, [S.resolved] * count, DISPATCHER, NOW,
        note="fence repaired", photo_url="https://example.org/fence.jpg",
    )
    assert isinstance(out, list)
    verified, closed = out
    assert type(verified) is WhistleVerified and type(closed) is WhistleClosed
    assert verified.note == "fence repaired"
    assert verified.photo_url == "https://example.org/fence.jpg"
    for event in out:
        assert event.whistle_id == WHISTLE_ID
        assert event.actor == "dispatcher:grid-leader"
        assert event.occurred_at == NOW
    assert verified.event_id != closed.event_id


def test_verify_checks_role_then_closed_then_dispatched():
    supervisor = Actor(role="supervisor", id="street")
    assert verify(WHISTLE_ID, True, [], supervisor, NOW).code == "dispatcher_only"
    assert verify(WHISTLE_ID, True, [], DISPATCHER, NOW).code == "already_closed"


# --- returned summons, follow-up -------------------------------------------------


def test_verify_ignores_returned_and_transferred_summons():
    [verified, closed] = verify(WHISTLE_ID, False, [S.returned, S.transferred, S.resolved], DISPATCHER, NOW)
    assert isinstance(closed, WhistleClosed)
    out = verify(WHISTLE_ID, False, [S.returned], DISPATCHER, NOW)
    assert isinstance(out, Refusal) and out.code == "not_dispatched"


def test_follow_up_refusals():
    from services.response.domain import follow_up

    out = follow_up(WHISTLE_ID, True, "d-housing", True, "satisfied", OWNER, NOW)
    assert isinstance(out, Refusal) and (out.status, out.code) == (403, "dispatcher_only")
    out = follow_up(WHISTLE_ID, False, "d-housing", True, "satisfied", DISPATCHER, NOW)
    assert isinstance(out, Refusal) and (out.status, out.code) == (409, "not_closed")


def test_one_follow_up_per_closure():
    from services.response.domain import follow_up, link_refusal

    for who in (DISPATCHER, Actor(role="resident", id="follow-up-link")):
        out = follow_up(WHISTLE_ID, True, "d-housing", True, "satisfied", who, NOW, followed_up=True)
        assert isinstance(out, Refusal) and (out.status, out.code) == (409, "already_followed_up") and " / " in out.reason
    assert follow_up(WHISTLE_ID, False, "d-housing", True, "satisfied", DISPATCHER, NOW, followed_up=True).code \
        == "not_closed"  # reopened: its next closure is asked again
    # a link answered before the reopen is dead, not "answered": 410
    made = NOW - timedelta(days=1)
    assert link_refusal(made, NOW, False, True, NOW, 7 * 24 * 3600).status == 410
    assert link_refusal(made, NOW, True, False, NOW, 7 * 24 * 3600).code == "link_dead"


@pytest.mark.parametrize(
    ("solved", "satisfaction", "reopens"),
    [(True, "satisfied", False), (True, "basically_satisfied", False), (True, "dissatisfied", True),
     (False, "satisfied", True), (False, "dissatisfied", True)],
)
def test_follow_up_reopens_to_the_same_lead_unless_solved_and_satisfied(solved, satisfaction, reopens):
    from services.response.domain import follow_up
    from shared.contracts import WhistleFollowedUp, WhistleReopened

    out = follow_up(WHISTLE_ID, True, "d-housing", solved, satisfaction, DISPATCHER, NOW, note="called / 电话回访")
    assert isinstance(out[0], WhistleFollowedUp) and out[0].satisfaction == satisfaction
    assert (len(out) == 2) is reopens
    if reopens:
        assert isinstance(out[1], WhistleReopened) and out[1].lead_responder_id == "d-housing"


def test_an_extension_reaches_at_most_90_days_ahead() -> None:
    """A deadline years ahead is counted to in working time day by day, and 9999-12-31 -14:00 is no UTC time."""
    issued = summons(S.reported)
    assert not isinstance(request_extension(issued, "resolve", NOW + timedelta(days=90), "x", OWNER, NOW), Refusal)
    far = request_extension(issued, "resolve", NOW + timedelta(days=90, seconds=1), "x", OWNER, NOW)
    edge = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))
    assert isinstance(far, Refusal) and (far.status, far.code, far.field) == (422, "deadline_too_far", "new_deadline")
    assert isinstance(request_extension(issued, "resolve", edge, "x", OWNER, NOW), Refusal)
    assert not isinstance(request_extension(issued, "resolve", NOW + timedelta(days=30), "x", OWNER, NOW), Refusal)
