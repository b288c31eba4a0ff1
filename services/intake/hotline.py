"""12345 hotline work orders (接诉即办): each row checked and mapped onto a whistle, or refused with
its row number, field and reason. Pure: no I/O besides reading the mapping file at start."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from shared.commands import RaiseWhistle
from shared.community import BUILDINGS

DEFAULT_MAPPING = Path(__file__).with_name("hotline_mapping.json")
FIELDS = ("order_id", "received_at", "category_text", "address", "description", "caller_phone", "deadline_class")
_BUILDING = re.compile(r"(?:^|\D)(\d{1,2})\s*(?:号楼|号|栋|幢)|building\s*(\d{1,2})|^\s*(\d{1,2})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Mapping:
    categories: dict[str, str]
    deadline_classes: dict[str, str]


@dataclass(frozen=True)
class Order:
    row: int
    external_id: str
    received_at: datetime
    whistle: RaiseWhistle


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    reason: str

    def as_dict(self) -> dict:
        return {"row": self.row, "field": self.field, "reason": self.reason}


def load_mapping(path: Path = DEFAULT_MAPPING) -> Mapping:
    data = json.loads(path.read_text(encoding="utf-8"))
    return Mapping({k.strip().lower(): v for k, v in data["categories"].items()},
                   {k.strip().lower(): v for k, v in data["deadline_classes"].items()})


def building_of(address: str) -> str | None:
    """'7号楼2单元' / 'Building 7' / '7' → '7' when it is one of the community's buildings."""
    m = _BUILDING.search(address or "")
    number = next((g for g in (m.groups() if m else ()) if g), None)
    return str(int(number)) if number and str(int(number)) in BUILDINGS else None


def check_row(row: int, raw: dict, mapping: Mapping, catalogue: set[str]) -> Order | RowError:
    """One work order → an Order, or the first problem with it."""
    if not isinstance(raw, dict):
        return RowError(row, "row", "a work order is an object / 每行须为对象")
    text = {f: str(raw.get(f) or "").strip() for f in FIELDS}
    if not text["order_id"]:
        return RowError(row, "order_id", "missing external order id / 缺少工单号")
    try:
        received = datetime.fromisoformat(text["received_at"])
        if received.tzinfo is None:
            raise ValueError
    except ValueError:
        return RowError(row, "received_at", "not an ISO 8601 time with a zone / 时间格式不对")
    category = mapping.categories.get(text["category_text"].lower())
    if category is None or category not in catalogue:
        return RowError(row, "category_text", f"unmapped category {text['category_text']!r} / 未映射的类别")
    building = building_of(text["address"])
    if building is None:
        return RowError(row, "address", "no building 1–22 of this community in the address / 地址中没有本社区楼号")
    tier = mapping.deadline_classes.get(text["deadline_class"].lower()) if text["deadline_class"] else None
    if text["deadline_class"] and tier is None:
        return RowError(row, "deadline_class", f"unknown deadline class {text['deadline_class']!r} / 未知时限类别")
    try:
        whistle = RaiseWhistle.model_validate({
            "category": category, "description": text["description"], "tier": tier, "source": "hotline_12345",
            "location": {"building": building, "address": text["address"][:200]},
            "reporter": {"phone": text["caller_phone"]} if text["caller_phone"] else None,
        })
    except ValidationError as exc:
        first = exc.errors()[0]
        field = {"description": "description", "reporter": "caller_phone"}.get(str(first["loc"][0]), str(first["loc"][0]))
        return RowError(row, field, first["msg"])
    return Order(row, text["order_id"], received, whistle)


def check_rows(rows: list, first_row: int, mapping: Mapping, catalogue: set[str]) -> tuple[list[Order], list[RowError]]:
    """Every row checked; a repeated order id within the batch is an error on the later row."""
    orders, errors, seen = [], [], set()
    for i, raw in enumerate(rows):
        outcome = check_row(first_row + i, raw, mapping, catalogue)
        if isinstance(outcome, RowError):
            errors.append(outcome)
        elif outcome.external_id in seen:
            errors.append(RowError(outcome.row, "order_id", "repeated in this batch / 批内重复"))
        else:
            seen.add(outcome.external_id)
            orders.append(outcome)
    return orders, errors
