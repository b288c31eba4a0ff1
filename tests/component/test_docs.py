"""`whistle docs` writes an AsyncAPI document per service with the subjects it consumes and emits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_whistle_docs_writes_every_services_subjects(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "services.cli.main", "docs", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    addresses = {}
    for service in ("intake", "routing", "response", "escalation", "ledger"):
        doc = json.loads((tmp_path / f"{service}.json").read_text())
        assert doc["asyncapi"].startswith("3.") and doc["info"]["title"] == f"Whistle {service}"
        addresses[service] = {c["address"] for c in doc["channels"].values()}
    assert {"cmd.intake.blow", "whistle.blown"} <= addresses["intake"]
    assert {"whistle.blown", "summons.issued", "summons.returned"} <= addresses["routing"]
    assert {"summons.>", "clock.due.*", "sla.breached", "escalation.raised"} <= addresses["escalation"]
    assert {"summons.reported", "cmd.response.act"} <= addresses["response"]
    assert {">", "deadletter.>"} <= addresses["ledger"]
    # the payload of an emitted event is its contract, with the envelope's fields
    intake = json.loads((tmp_path / "intake.json").read_text())
    schemas = json.dumps(intake["components"]["schemas"])
    assert "correlation_id" in schemas and "schema_version" in schemas
