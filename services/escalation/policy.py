"""SLA policies as data: a file the operator edits, validated at start with clear errors."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

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
    return timedelta(seconds=seconds)


def format_duration(td: timedelta) -> str:
    seconds = td.total_seconds()
    return f"{seconds:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
Level = Literal["responder", "superior", "street_command", "district"]


class LadderStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: Level
    after: Duration = Field(description="Wait after the previous step (the first: after the deadline)")


class TierPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name_zh: str = ""
    report_within: Duration = Field(description="Deadline to report (acknowledge) / 报到时限")
    ladder: list[LadderStep] = Field(min_length=1)


class Policies(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    tiers: dict[Tier, TierPolicy]

    def for_tier(self, tier: Tier) -> TierPolicy:
        return self.tiers[tier]


def load_policies(path: Path = DEFAULT_POLICIES) -> Policies:
    """Read and validate the policy file; every tier must have a policy."""
    policies = Policies.model_validate_json(path.read_text(encoding="utf-8"))
    missing = set(Tier) - set(policies.tiers)
    if missing:
        raise ValueError(f"{path}: no policy for tier(s) {sorted(m.value for m in missing)}")
    return policies
