"""SLA policies as data: a file the operator edits, validated at start with clear errors."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError, model_validator

from services.escalation.calendar import CalendarSpec
from shared.contracts import Tier

DEFAULT_POLICIES = Path(__file__).with_name("policies.json")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> timedelta:
    """'45s', '30m', '2h', '3d' or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration like '45s', '30m', '2h' or '3d'")
        seconds = float(match[1]) * _UNIT[match[2]]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{value!r} is too long a duration") from None


def format_duration(td: timedelta) -> str:
    seconds = td.total_seconds()
    return f"{seconds:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
Level = Literal["responder", "superior", "street_command", "district"]


class LadderStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # shared by every clock that snapshots it
    level: Level
    after: Duration = Field(description="Wall-time wait after the previous step (the first: after the deadline)")


Basis = Literal["wall", "working"]
Kind = Literal["report", "on_site", "resolve"]


class TierPolicy(BaseModel):
    """Deadlines, warning point, time basis and ladder of one tier (maybe one category)."""

    model_config = ConfigDict(extra="forbid")
    name_zh: str = ""
    basis: Basis = Field(default="wall", description="Count wall time, or working time of the calendar")
    report_within: Duration = Field(description="Deadline to report (acknowledge) / 报到时限")
    on_site_within: Duration | None = Field(default=None, description="Deadline to arrive on site / 到场时限")
    resolve_within: Duration | None = Field(default=None, description="Deadline to resolve / 办结时限")
    warn_at: float | None = Field(default=0.8, gt=0, lt=1, description="Warn when this share of the time is used")
    ladder: list[LadderStep] = Field(min_length=1)
    ladder_repeats: int = Field(default=0, ge=0, le=10, description="Times the whole ladder repeats after the last step")

    def budgets(self) -> dict[Kind, timedelta]:
        """The time each clock is allowed, for the clocks this policy sets."""
        out: dict[Kind, timedelta] = {"report": self.report_within}
        if self.on_site_within is not None:
            out["on_site"] = self.on_site_within
        if self.resolve_within is not None:
            out["resolve"] = self.resolve_within
        return out


class Override(BaseModel):
    """A category's own deadlines, for one tier or all; unset fields keep the tier's."""

    model_config = ConfigDict(extra="forbid")
    category: str
    tier: Tier | None = None
    basis: Basis | None = None
    report_within: Duration | None = None
    on_site_within: Duration | None = None
    resolve_within: Duration | None = None
    warn_at: float | None = Field(default=None, gt=0, lt=1)
    ladder: list[LadderStep] | None = None
    ladder_repeats: int | None = Field(default=None, ge=0, le=10)


class Policies(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    calendar: CalendarSpec = Field(default_factory=CalendarSpec)
    tiers: dict[Tier, TierPolicy]
    overrides: list[Override] = Field(default_factory=list)

    @model_validator(mode="after")
    def _every_tier(self) -> Policies:
        missing = set(Tier) - set(self.tiers)
        if missing:
            raise ValueError(f"no policy for tier(s) {sorted(m.value for m in missing)}")
        return self

    def for_tier(self, tier: Tier) -> TierPolicy:
        return self.tiers[tier]

    def for_summons(self, tier: Tier, category: str) -> TierPolicy:
        """The tier's policy with the category's overrides applied (tier-specific ones last)."""
        policy = self.tiers[tier]
        matching = [o for o in self.overrides if o.category == category and o.tier in (None, tier)]
        for override in sorted(matching, key=lambda o: o.tier is not None):
            # what the override names, a null included (`"warn_at": null`: no warning for this category)
            changes = override.model_dump(exclude={"category", "tier"}, exclude_unset=True)
            policy = policy.model_copy(update={k: getattr(override, k) for k in changes})
        return policy


def load_policies(path: Path = DEFAULT_POLICIES) -> Policies:
    """Read and validate the policy file; an error names the file and the field."""
    try:
        return Policies.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid SLA policy file:\n{exc}") from None
