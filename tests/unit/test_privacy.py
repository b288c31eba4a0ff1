"""The pure parts of reporters' data protection: when a whistle's reporter data is due for deletion, what a view
keeps of a removed reporter, the scrubbed attempt log, the audit's CSV, and public consent carried by intake."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from services.gateway.api import audit_csv, wants_json
from services.intake.domain import blow, load_catalogue
from shared import privacy
from shared.commands import RaiseWhistle
from shared.contracts import Reporter
from shared.settings import ServiceSettings

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(("closed", "reopened", "due"), [
    (None, None, False),  # never struck off: open
    (NOW - 181 * DAY, None, True),  # struck off past the retention
    (NOW - 180 * DAY, None, True),  # exactly at it
    (NOW - 179 * DAY, None, False),  # not yet
    (NOW - 200 * DAY, NOW - 190 * DAY, False),  # reopened since: open again
    (NOW - 181 * DAY, NOW - 190 * DAY, True),  # reopened, then struck off again, long ago
    (NOW - 10 * DAY, NOW - 190 * DAY, False),  # struck off again, recently
])
def test_due_for_purge_counts_from_the_last_close_not_followed_by_a_reopen(closed, reopened, due) -> None:
    assert privacy.due_for_purge(closed, reopened, NOW, 180) is due


def test_the_retention_setting_defaults_to_180_days_and_is_read_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("WHISTLE_AUTH_SECRET", "x" * 40)
    assert ServiceSettings().reporter_retention_days == 180
    monkeypatch.setenv("WHISTLE_REPORTER_RETENTION_DAYS", "30")
    monkeypatch.setenv("WHISTLE_REPORTER_PURGE_EVERY_S", "5")
    settings = ServiceSettings()
    assert (settings.reporter_retention_days, settings.reporter_purge_every_s) == (30, 5)
    monkeypatch.setenv("WHISTLE_REPORTER_RETENTION_DAYS", "0")
    with pytest.raises(ValueError, match="WHISTLE_REPORTER_RETENTION_DAYS"):
        ServiceSettings()


def test_a_removed_reporter_keeps_the_consent_to_publication_after_retention_but_not_after_erasure() -> None:
    given = {"name": "李先生", "phone": "139****1234", "email": None, "sms_consent": True, "public_consent": True}
    assert privacy.removed_reporter(privacy.RETENTION, NOW, given) == {
        "removed": "retention", "removed_at": NOW.isoformat(), "public_consent": True}
    assert privacy.removed_reporter(privacy.ERASURE, NOW, given) == {"removed": "erasure",
                                                                     "removed_at": NOW.isoformat()}
    assert privacy.removed_reporter(privacy.RETENTION, NOW, None) == {"removed": "retention",
                                                                      "removed_at": NOW.isoformat()}


def test_free_text_loses_the_reporters_name_and_number() -> None:
    text = privacy.masked_free_text("楼道漏水，请联系李建国 13912345678", "李建国")
    assert "李建国" not in text and "5678" not in text and "楼道漏水" in text
    assert privacy.masked_free_text(None, "李建国") is None


def test_scrubbed_attempts_keep_the_outcome_without_the_number_or_answer() -> None:
    log = [{"attempt": 1, "outcome": "delivered", "status": 200, "address": "139****1234", "answer": "OK 13912341234"}]
    assert privacy.scrubbed_attempts(log) == [{"attempt": 1, "outcome": "delivered", "status": 200, "address": None,
                                               "answer": None}]


def test_public_consent_goes_from_the_blow_into_the_event() -> None:
    raised = RaiseWhistle(category="roof_leak", description="leak", location={"building": "7"},
                          source="hotline_12345", reporter={"phone": "13912345678", "public_consent": True})
    event = blow(raised, load_catalogue(), "dispatcher:d", NOW)
    assert event.reporter == Reporter(phone="139****5678", public_consent=True)
    assert RaiseWhistle(category="roof_leak", description="leak", location={"building": "7"},
                        reporter={"name": "x"}).reporter.public_consent is False


def test_the_audit_csv_has_its_header_once_and_no_formula_cells() -> None:
    rows = [{"at": NOW.isoformat(), "whistle_id": "w1", "type": "whistle.blown", "actor_role": "dispatcher",
             "actor_id": "=HYPERLINK(1)"}]
    text = audit_csv(rows, header=True) + audit_csv(rows)
    read = list(csv.reader(io.StringIO(text)))
    assert read[0] == ["at", "whistle_id", "type", "actor_role", "actor_id"] and len(read) == 3
    assert read[1][4] == "'=HYPERLINK(1)" and read[1][:4] == [NOW.isoformat(), "w1", "whistle.blown", "dispatcher"]


class _Asked:
    def __init__(self, accept: str):
        self.headers = {"accept": accept} if accept else {}


@pytest.mark.parametrize(("accept", "json_"), [
    ("", False), ("*/*", False), ("text/csv", False), ("application/json", True),
    ("application/json, text/csv;q=0.5", True), ("text/csv, application/json", False),
])
def test_the_audit_answers_json_only_when_asked_first(accept, json_) -> None:
    assert wants_json(_Asked(accept)) is json_


def test_a_dead_lettered_event_loses_its_reporter_and_the_number_texted() -> None:
    from uuid import UUID

    from services.ledger.store import _without_reporter

    w = UUID("0195f0a0-0000-7000-8000-000000000001")
    blown = {"whistle_id": str(w), "description": "请联系李建国 13912345678", "reporter": {"name": "李建国"}}
    out = json.loads(_without_reporter(json.dumps(blown).encode(), {w: "李建国"}))
    assert out["reporter"] is None and "李建国" not in out["description"] and "5678" not in out["description"]
    sent = {"whistle_id": str(w), "recipient_id": "resident", "address": "139****5678", "answer": "ok"}
    assert json.loads(_without_reporter(json.dumps(sent).encode(), {}))["address"] is None
    assert _without_reporter(json.dumps({"whistle_id": str(w), "recipient_id": "d-housing"}).encode(), {}) is None
    assert _without_reporter(b"not json", {}) is None


def test_the_event_log_keeps_nothing_longer_than_the_reporters_data_may_be_kept():
    """whistle.blown carries the reporter (and free text): EVENTS and the dead letters (event bodies) are
    kept no longer than WHISTLE_REPORTER_RETENTION_DAYS, and never over a year."""
    from shared.streams import DAY, stream_configs

    def ages(days: float) -> dict[str, float]:
        return {c.name: c.max_age / DAY for c in stream_configs(retention_days=days) if c.max_age}

    assert ages(180) == {"EVENTS": 180, "DEADLETTER": 90, "ADVISORIES": 30}
    assert ages(30)["EVENTS"] == 30 and ages(30)["DEADLETTER"] == 30
    assert ages(3650)["EVENTS"] == 365
    from services.cli.settings import RunnerSettings
    from shared.settings import ServiceSettings

    assert RunnerSettings().reporter_retention_days == ServiceSettings().reporter_retention_days == 180
