"""12345 work orders: every row mapped onto a whistle, or refused with its row, field and reason."""

from __future__ import annotations

import pytest

from services.intake.domain import load_catalogue
from services.intake.hotline import Order, RowError, building_of, check_row, check_rows, load_mapping

MAPPING = load_mapping()
CATALOGUE = set(load_catalogue())
GOOD = {"order_id": "A-1", "received_at": "2026-11-20T09:00:00+08:00", "category_text": "屋顶漏雨",
        "address": "星城街道第七社区7号楼2单元", "description": "顶楼漏雨", "caller_phone": "13812345678",
        "deadline_class": "紧急"}


@pytest.mark.parametrize(("address", "building"), [
    ("7号楼2单元", "7"), ("第七社区22号楼", "22"), ("Building 12", "12"), ("3", "3"), ("5栋", "5"),
    ("23号楼", None), ("别的小区", None), ("", None), ("07号楼", "7"),
])
def test_the_building_is_read_from_the_address(address, building):
    assert building_of(address) == building


def test_a_good_row_becomes_a_hotline_whistle():
    order = check_row(2, GOOD, MAPPING, CATALOGUE)
    assert isinstance(order, Order) and order.external_id == "A-1"
    w = order.whistle
    assert (w.category, w.tier.value, w.source.value, w.location.building) == ("roof_leak", "urgent", "hotline_12345", "7")
    assert w.reporter.phone == "13812345678"  # masked later, in the event and every read


@pytest.mark.parametrize(("field", "value"), [
    ("order_id", ""), ("received_at", "2026-11-20 09:00"), ("received_at", "yesterday"),
    ("category_text", "天上掉馅饼"), ("address", "北京别处"), ("deadline_class", "明天"),
    ("description", ""), ("caller_phone", "call me"),
])
def test_a_bad_row_names_its_field(field, value):
    error = check_row(9, {**GOOD, field: value}, MAPPING, CATALOGUE)
    assert isinstance(error, RowError) and (error.row, error.field) == (9, field) and error.reason


def test_rows_are_numbered_from_first_row_and_a_repeated_id_is_refused():
    orders, errors = check_rows([GOOD, {**GOOD, "category_text": "x"}, GOOD], 501, MAPPING, CATALOGUE)
    assert [o.row for o in orders] == [501]
    assert [(e.row, e.field) for e in errors] == [(502, "category_text"), (503, "order_id")]


def test_a_missing_deadline_class_takes_the_category_default():
    order = check_row(1, {**GOOD, "deadline_class": ""}, MAPPING, CATALOGUE)
    assert order.whistle.tier is None  # intake fills the category's default tier
