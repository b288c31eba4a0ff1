"""Intake's pure rules: a raised whistle is checked against the catalogue and becomes WhistleBlown."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from shared.commands import RaiseWhistle, mask_phone
from shared.contracts import Refusal, Reporter, Tier, WhistleBlown
from shared.community import BUILDINGS
from shared.ids import uuid7

DEFAULT_CATALOGUE = Path(__file__).with_name("catalogue.json")


@dataclass(frozen=True)
class Category:
    code: str
    name_en: str
    name_zh: str
    default_tier: str


def load_catalogue(path: Path = DEFAULT_CATALOGUE) -> dict[str, Category]:
    """The service catalogue, a data file the operator edits."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {c["code"]: Category(**c) for c in data["categories"]}


def blow(
    cmd: RaiseWhistle, catalogue: dict[str, Category], actor: str, now: datetime, buildings=BUILDINGS
) -> WhistleBlown | Refusal:
    """吹哨: accept a whistle or refuse it with the field and the reason."""
    if cmd.category not in catalogue:
        return Refusal(
            status=422, code="unknown_category", field="category",
            reason=f"unknown category {cmd.category!r}; see GET /v1/categories / 未知的问题类别",
        )
    if cmd.location.building not in buildings:
        return Refusal(
            status=422, code="unknown_building", field="location.building",
            reason=f"building {cmd.location.building!r} is not in this community (1–22) / 楼号不在本社区",
        )
    whistle_id = uuid7()
    return WhistleBlown(
        occurred_at=now, whistle_id=whistle_id, actor=actor, category=cmd.category,
        description=cmd.description, location=cmd.location, source=cmd.source, attachments=cmd.attachments,
        reporter=Reporter(name=cmd.reporter.name, phone=mask_phone(cmd.reporter.phone)) if cmd.reporter else None,
        tier=cmd.tier or Tier(catalogue[cmd.category].default_tier),
    )
