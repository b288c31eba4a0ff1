"""A contact rule names someone routing knows: what the notifier makes of routing's answers."""

from __future__ import annotations

import pytest

from services.notifier.recipients import unknown
from shared import subjects
from shared.contracts import Reply


def fake_routing(responders: set[str], acting_as: set[str], *, away: bool = False):
    """Routing as the notifier sees it: the registry, and the ids console accounts act as."""
    asked: list[str] = []

    async def ask(subject: str, payload: dict) -> Reply | None:
        asked.append(subject)
        if away:
            return None
        assert subject == subjects.QRY_ROUTING_KNOWN
        return Reply.success({"id": payload["id"], "responder": payload["id"] in responders,
                              "account": payload["id"] in acting_as})

    return ask, asked


@pytest.mark.parametrize(("recipient", "status", "questions"), [
    ("d-housing", None, 1),  # a registry responder
    ("community-7", None, 1),  # whom the dispatcher's account acts as
    ("community", None, 0),  # the notifier's own desks need no question
    ("street-command-centre", None, 0),
    ("d-nobody", 404, 1),
])
async def test_an_id_is_known_to_the_registry_or_the_accounts_or_refused_404_on_its_field(recipient, status, questions):
    ask, asked = fake_routing({"d-housing"}, {"community-7", "xingcheng-street"})
    refused = await unknown(ask, recipient)
    assert (refused.refusal.status if refused else None) == status and len(asked) == questions
    if refused:
        assert refused.refusal.field == "id" and " / " in refused.refusal.reason


async def test_routing_away_is_a_503_not_a_guess():
    ask, _ = fake_routing(set(), set(), away=True)
    assert (await unknown(ask, "d-housing")).refusal.status == 503
