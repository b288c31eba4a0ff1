"""Command payloads: RaiseWhistle rejects what the gateway must answer with a 422."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.commands import MAX_DESCRIPTION, RaiseWhistle
from shared.contracts import Source, Tier

VALID = {"category": "fence_broken", "description": "fence cut", "location": {"building": "7"}}


def with_(**changes) -> dict:
    return {**VALID, **changes}


def error_locs(exc: ValidationError) -> set[tuple]:
    return {tuple(e["loc"]) for e in exc.errors()}


def test_minimal_payload_gets_defaults():
    cmd = RaiseWhistle.model_validate(VALID)
    assert (cmd.tier, cmd.source) == (None, Source.community)  # intake fills the category's tier


def test_whitespace_is_stripped():
    cmd = RaiseWhistle.model_validate(with_(description="  fence cut  ", category=" fence_broken "))
    assert (cmd.description, cmd.category) == ("fence cut", "fence_broken")


def test_description_at_the_limit_is_accepted():
    assert len(RaiseWhistle.model_validate(with_(description="x" * MAX_DESCRIPTION)).description) == MAX_DESCRIPTION


@pytest.mark.parametrize("description", ["", "   ", "\n\t ", "x" * (MAX_DESCRIPTION + 1)])
def test_bad_description_is_rejected(description):
    with pytest.raises(ValidationError) as exc:
        RaiseWhistle.model_validate(with_(description=description))
    assert error_locs(exc.value) == {("description",)}


@pytest.mark.parametrize("tier", ["critical", "", "URGENT", 1])
def test_bad_tier_is_rejected(tier):
    with pytest.raises(ValidationError) as exc:
        RaiseWhistle.model_validate(with_(tier=tier))
    assert error_locs(exc.value) == {("tier",)}


@pytest.mark.parametrize("tier", list(Tier))
def test_every_tier_is_accepted(tier):
    assert RaiseWhistle.model_validate(with_(tier=tier.value)).tier is tier


def test_bad_source_is_rejected():
    with pytest.raises(ValidationError) as exc:
        RaiseWhistle.model_validate(with_(source="twitter"))
    assert error_locs(exc.value) == {("source",)}


def test_extra_field_is_rejected():
    with pytest.raises(ValidationError) as exc:
        RaiseWhistle.model_validate(with_(priority="high"))
    assert error_locs(exc.value) == {("priority",)}


def test_extra_field_in_location_is_rejected():
    with pytest.raises(ValidationError) as exc:
        RaiseWhistle.model_validate(with_(location={"building": "7", "floor": 3}))
    assert error_locs(exc.value) == {("location", "floor")}


@pytest.mark.parametrize("missing", ["category", "description", "location"])
def test_required_field_missing(missing):
    payload = {k: v for k, v in VALID.items() if k != missing}
    with pytest.raises(ValidationError) as exc:
        RaiseWhistle.model_validate(payload)
    assert error_locs(exc.value) == {(missing,)}


def test_empty_building_is_rejected():
    with pytest.raises(ValidationError) as exc:
        RaiseWhistle.model_validate(with_(location={"building": ""}))
    assert error_locs(exc.value) == {("location", "building")}


FIELDS = ["category", "description", "location", "tier", "source", "building", "grid", "address", "service_point"]
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30) | st.sampled_from(
    ["fence_broken", "7", "urgent", "routine", "hotline_12345", " ", "x" * (MAX_DESCRIPTION + 1)]
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=100)
@given(payload=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=7))
def test_any_json_like_payload_validates_or_raises_validation_error(payload):
    try:
        cmd = RaiseWhistle.model_validate(payload)
    except ValidationError:
        return
    assert 0 < len(cmd.description) <= MAX_DESCRIPTION and cmd.description.strip()
    assert cmd.category and cmd.location.building


@settings(max_examples=100)
@given(payload=json_values)
def test_any_json_value_validates_or_raises_validation_error(payload):
    try:
        RaiseWhistle.model_validate(payload)
    except ValidationError:
        pass
    else:
        assert isinstance(payload, dict)


def test_an_email_is_checked_and_masked_to_its_first_letter_and_domain():
    from pydantic import ValidationError

    from shared.commands import ReporterIn, mask_email

    assert ReporterIn(email="liu@example.org").email == "liu@example.org"
    for bad in ("not-an-email", "a@b", "two@@example.org", "a b@example.org", "@example.org"):
        with pytest.raises(ValidationError):
            ReporterIn(email=bad)
    assert mask_email("liu@example.org") == "l***@example.org"
    assert mask_email(None) is None
