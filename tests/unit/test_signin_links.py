"""Sign-in links and password resets, the pure parts: the token's hash, the link in the message and
how reads cut it short, which step a link goes by, and a refused password's words by its field."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from services.gateway.console import people
from services.notifier import signin
from services.notifier.messages import render
from services.routing import accounts
from services.routing.signin_links import token_hash
from shared.commands import PasswordSet, SigninLinkAsk
from shared.contacts import ContactRule

TOKEN = "Zq3x_Kd9-" + "a" * 34


def test_only_a_hash_of_the_token_is_kept_and_each_token_has_its_own():
    assert token_hash(TOKEN) == token_hash(TOKEN) and len(token_hash(TOKEN)) == 32
    assert TOKEN.encode() not in token_hash(TOKEN)
    assert token_hash(TOKEN) != token_hash(TOKEN[:-1] + "b")


def test_the_console_and_routing_check_a_password_with_one_model():
    assert accounts.PasswordSet is PasswordSet  # what cmd.routing.password_set validates with
    one = [{"username": "d-housing", "role": "responder"}]
    assert PasswordSet.model_validate({"accounts": one, "password": "12345678"}).password == "12345678"
    with pytest.raises(ValidationError) as short:
        PasswordSet.model_validate({"accounts": one, "password": "1234567"})
    assert short.value.errors()[0]["loc"] == ("password",)
    with pytest.raises(ValidationError):
        SigninLinkAsk.model_validate({"username": "   "})


class _Page:
    gettext = staticmethod(lambda s: s)


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"accounts": [{"username": "d-housing", "role": "responder"}], "password": "short"}, "password",
     "At least 8 characters."),
    ({"accounts": [{"username": "d-housing", "role": "responder"}], "password": "x" * 129}, "password",
     "This is too long."),
    ({"accounts": [{"username": "", "role": "responder"}], "password": "long enough"}, "username",
     "This field is required."),
    ({"accounts": [{"username": "no spaces please", "role": "responder"}], "password": "long enough"}, "username",
     "This is not in the expected form."),
])
def test_a_refused_password_form_says_why_next_to_the_field_it_names(body, field, words):
    with pytest.raises(ValidationError) as refused:
        PasswordSet.model_validate(body)
    assert people.password_errors(_Page(), refused.value) == {field: words}


def test_the_link_is_built_from_the_public_address_and_reads_show_it_cut_short():
    link = signin.link("https://whistle.example.org/", {"token": TOKEN})
    assert link == f"https://whistle.example.org/console/signin/link/{TOKEN}"
    shown = signin.scrub(f"receiver said: got {link} thanks")
    assert TOKEN not in shown and "/console/signin/link/…" in shown
    assert signin.scrub(None) is None and signin.scrub("nothing to hide") == "nothing to hide"


def test_a_link_goes_at_once_by_the_first_step_that_reaches_the_person():
    rule = ContactRule.model_validate({"steps": [
        {"target": "superior"},
        {"channel": "wecom", "address": "wecom-robot-key", "delay_s": 60},
        {"channel": "email", "address": "a@example.org", "delay_s": 300}]})
    [step] = signin.first_step_only(rule).steps
    assert (step.channel, step.address, step.delay_s) == ("wecom", "wecom-robot-key", 0)
    assert signin.first_step_only(ContactRule.model_validate({"steps": [{"target": "superior"}]})) is None


def test_routing_asks_for_a_link_with_a_well_formed_token_only():
    ok = {"link_id": str(uuid4()), "recipient_id": "d-housing", "token": TOKEN,
          "expires_at": "2026-11-20T09:15:00+00:00"}
    assert signin.SigninLinkSend.model_validate(ok).recipient_id == "d-housing"
    for bad in ({"token": "short"}, {"token": TOKEN + "/.."}, {"expires_at": "2026-11-20T09:15:00"}):
        with pytest.raises(ValidationError):
            signin.SigninLinkSend.model_validate({**ok, **bad})


@pytest.mark.parametrize(("locale", "words"), [("zh-CN", "仅可使用一次"), ("en", "works once")])
def test_the_link_message_names_the_link_and_its_expiry_in_beijing_time(locale, words):
    link = signin.link("https://whistle.example.org", {"token": TOKEN})
    expires = datetime(2026, 11, 20, 1, 15, tzinfo=UTC).isoformat()
    m = render(signin.KIND, {}, {"token": TOKEN, "expires_at": expires}, link, locale, {})
    assert link in m.text and words in m.text and "2026-11-20 09:15" in m.text
    assert link in m.text_zh and link in m.text_en and m.params["link"] == link
