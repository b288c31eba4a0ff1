"""Intake's pure rules: a raised whistle is checked against the catalogue and becomes WhistleBlown."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from shared.commands import RaiseWhistle, mask_email, mask_phone
from shared.community import BUILDINGS
from shared.contracts import Refusal, Reporter, Tier, WhistleBlown
from shared.ids import uuid7

DEFAULT_CATALOGUE = Path(__file__).with_name("catalogue.json")


DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")


@dataclass(frozen=True)
class Choice:
    key: str
    name: str


@dataclass(frozen=True)
class Attribute:
    """A question a category asks of the reporter (an Open311 service attribute)."""

    code: str
    datatype: str = "string"
    required: bool = False
    description: str = ""
    values: tuple[Choice, ...] = ()

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise ValueError(f"attribute {self.code!r}: unknown datatype {self.datatype!r}")


@dataclass(frozen=True)
class Category:
    code: str
    name_en: str
    name_zh: str
    default_tier: str
    group: str | None = None
    keywords: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()


def _category(raw: dict) -> Category:
    attributes = tuple(
        Attribute(**{**a, "values": tuple(Choice(**v) for v in a.get("values", ()))}) for a in raw.get("attributes", ())
    )
    return Category(**{**raw, "keywords": tuple(raw.get("keywords", ())), "attributes": attributes})


def load_catalogue(path: Path = DEFAULT_CATALOGUE) -> dict[str, Category]:
    """The service catalogue, a data file the operator edits (attributes, keywords and group optional)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {c["code"]: _category(c) for c in data["categories"]}


def check_attributes(category: Category, given: dict[str, list[str]]) -> Refusal | str:
    """The answers to a category's questions as a description suffix ("[attr code=value]"), or a refusal.

    Required ones must be present, list answers among the keys, numbers numeric; unknown codes are refused.
    """
    known = {a.code: a for a in category.attributes}
    for code in given:
        if code not in known:
            return Refusal(status=422, code="unknown_attribute", field=f"attribute[{code}]",
                           reason=f"{category.code} has no attribute {code!r} / 该类别无此属性")
    parts = []
    for a in category.attributes:
        values = [v.strip() for v in given.get(a.code, []) if v.strip()]
        if not values:
            if a.required:
                return Refusal(status=422, code="missing_attribute", field=f"attribute[{a.code}]",
                               reason=f"attribute {a.code!r} is required / 缺少必填属性")
            continue
        if a.datatype != "multivaluelist" and len(values) > 1:
            return Refusal(status=422, code="bad_attribute", field=f"attribute[{a.code}]",
                           reason=f"attribute {a.code!r} takes one value / 该属性只能有一个值")
        if a.datatype.endswith("valuelist"):
            keys = {c.key for c in a.values}
            if bad := [v for v in values if v not in keys]:
                return Refusal(status=422, code="bad_attribute", field=f"attribute[{a.code}]",
                               reason=f"{bad[0]!r} is not one of {sorted(keys)} / 属性值无效")
        if a.datatype == "number":
            try:
                float(values[0])
            except ValueError:
                return Refusal(status=422, code="bad_attribute", field=f"attribute[{a.code}]",
                               reason=f"attribute {a.code!r} must be a number / 属性须为数字")
        parts.append(f"[attr {a.code}={','.join(values)}]")
    return " ".join(parts)


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
        reporter=Reporter(name=cmd.reporter.name, phone=mask_phone(cmd.reporter.phone),
                          email=mask_email(cmd.reporter.email), sms_consent=cmd.reporter.sms_consent,
                          public_consent=cmd.reporter.public_consent)
        if cmd.reporter else None,
        tier=cmd.tier or Tier(catalogue[cmd.category].default_tier),
    )
