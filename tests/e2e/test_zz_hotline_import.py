"""12345 work orders: 5,000 rows with 3 bad ones — all or nothing, then partial, then a re-import
that changes nothing. (Named to run last: 5,000 whistles keep the services busy for a while.)"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.conftest import ROOT, System

CATEGORIES = ["屋顶漏雨", "噪音扰民", "围栏破损", "楼道脏乱", "车棚破旧"]
BAD = {1234: ("category_text", "天上掉馅饼"), 2500: ("address", "北京市别的小区"), 4999: ("received_at", "yesterday")}


def _write(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["order_id", "received_at", "category_text", "address", "description",
                                          "caller_phone", "deadline_class"])
        w.writeheader()
        for i in range(1, 5001):
            row = {"order_id": f"12345-2026-{i:06d}", "received_at": "2026-11-20T09:00:00+08:00",
                   "category_text": CATEGORIES[i % 5], "address": f"星城街道第七社区{i % 22 + 1}号楼",
                   "description": f"市民来电反映问题 #{i}", "caller_phone": f"1381234{i:04d}", "deadline_class": "普通"}
            if i in BAD:
                field, value = BAD[i]
                row[field] = value
            w.writerow(row)


def _import(system: System, path: Path, *extra: str) -> tuple[int, dict]:
    env = {**os.environ, "WHISTLE_HOME": str(system.home), "WHISTLE_BASE": system.base_url}
    done = subprocess.run([sys.executable, "-m", "services.cli.main", "import", str(path), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, json.loads(done.stdout)


def test_a_5000_row_file_with_3_bad_rows_all_or_nothing_then_partial_then_idempotent(system: System, tmp_path) -> None:
    path = tmp_path / "orders.csv"
    _write(path)
    code, result = _import(system, path)
    assert code == 1 and result["imported"] == 0
    assert sorted((f["row"], f["field"]) for f in result["failed"]) == sorted(
        (row, field) for row, (field, _) in BAD.items())
    assert all(f["reason"] for f in result["failed"])

    code, result = _import(system, path, "--partial")  # nothing from the first try was stored
    assert code == 0 and result["imported"] == 4997 and result["unchanged"] == 0 and len(result["failed"]) == 3

    code, result = _import(system, path, "--partial")
    assert code == 0 and result["imported"] == 0 and result["unchanged"] == 4997

    with system.client("dispatcher") as d:  # the same over HTTP, and a batch too big for one call
        r = d.post("/v1/imports", json={"rows": [{"order_id": "x"}] * 1001})
        assert r.status_code == 422
        r = d.post("/v1/imports", json={"rows": [{"order_id": "12345-2026-000001", "received_at": "bad"}]})
        assert r.status_code == 422 and r.json()["failed"][0] == {
            "row": 1, "field": "received_at", "reason": "not an ISO 8601 time with a zone / 时间格式不对"}
    with httpx.Client(base_url=system.base_url, headers={"Authorization": f"Bearer {system.token('d-housing')}"}) as c:
        assert c.post("/v1/imports", json={"rows": [{"order_id": "y"}]}).status_code == 403


def test_the_same_orders_imported_twice_at_once_become_whistles_once(system: System) -> None:
    """Requests are answered concurrently: two imports of one batch must not both find it new."""
    import asyncio

    rows = [{"order_id": f"12345-2026-C{i:05d}", "received_at": "2026-11-21T10:00:00+08:00",
             "category_text": "噪音扰民", "address": f"星城街道第七社区{i % 22 + 1}号楼",
             "description": f"同时导入 #{i}", "caller_phone": "13800001111", "deadline_class": "普通"}
            for i in range(300)]

    async def both() -> list[dict]:
        headers = {"Authorization": f"Bearer {system.token('dispatcher')}"}
        async with httpx.AsyncClient(base_url=system.base_url, headers=headers, timeout=60) as c:
            replies = await asyncio.gather(*(c.post("/v1/imports", json={"rows": rows}) for _ in range(2)))
        assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
        return [r.json() for r in replies]

    results = asyncio.run(both())
    assert sorted(r["imported"] for r in results) == [0, 300]
    assert sorted(r["unchanged"] for r in results) == [0, 300]
