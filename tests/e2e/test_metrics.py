"""Every service serves /healthz and /metrics for supervisors, with bounded labels."""

from __future__ import annotations

import re

import httpx

from shared.subjects import SERVICES  # every service with a telemetry port
from tests.e2e.conftest import System, wait_for


def _metrics(system: System, service: str) -> str:
    return httpx.get(f"{system.telemetry_url(service)}/metrics", timeout=5).text


def test_every_service_is_healthy_and_serves_metrics(system: System) -> None:
    for service in SERVICES:
        assert httpx.get(f"{system.telemetry_url(service)}/healthz", timeout=5).status_code == 200
        assert "whistle_consumer_pending_messages" in _metrics(system, service) or service == "intake"
    assert "whistle_http_requests_total" in httpx.get(f"{system.base_url}/metrics").text


def test_supervisor_metrics_follow_the_work(system: System) -> None:
    whistle_id = system.blow(tier="urgent", category="roof_leak", source="grid_patrol")
    summons = system.wait_summons(whistle_id)["summons"][0]
    with system.client(summons["responder_id"]) as responder:
        assert responder.post(f"/v1/summons/{summons['id']}/report").status_code == 200

    intake = _metrics(system, "intake")
    assert re.search(r'whistle_whistles_total\{category="roof_leak",source="grid_patrol",tier="urgent"\} [1-9]', intake)
    response = _metrics(system, "response")
    assert re.search(r'whistle_response_latency_seconds_count\{kind="department",step="reported",tier="urgent"\} [1-9]',
                     response)
    wait_for(lambda: re.search(r'whistle_summons\{state="reported"\} [1-9]', _metrics(system, "response")),
             timeout=30, interval=1, what="summons-by-state gauge")
    # an unanswered urgent summons breaches (2 s in the test policy) and climbs to the superior
    unanswered = system.blow(tier="urgent", category="roof_leak")
    system.wait_summons(unanswered)
    wait_for(lambda: re.search(r'whistle_escalations_total\{department="d-housing",level="superior"\} [1-9]',
                               _metrics(system, "escalation")), timeout=20, what="escalation metric")
    escalation = _metrics(system, "escalation")
    assert re.search(r'whistle_sla_breaches_total\{department="d-housing",tier="urgent"\} [1-9]', escalation)
    assert "whistle_clocks_pending" in escalation
    for service in SERVICES:  # no whistle, summons or clock id ever becomes a label
        text = _metrics(system, service)
        assert whistle_id not in text and summons["id"] not in text
        assert not re.search(r'"clock\.(timer|due)\.[0-9a-f-]{36}"', text), service
    assert 'subject="clock.timer"' in _metrics(system, "escalation")


def test_batch_sizes_are_measured_per_consumer_and_group_commit(system: System) -> None:
    """How full each transaction is (what a replica's share of the load costs): a consumer's batches by
    its durable, a group commit's by its request subject; the sum counts every message."""
    def handled(service: str, consumer: str) -> float:
        found = re.search(rf'whistle_batch_messages_sum\{{consumer="{re.escape(consumer)}",service="{service}"\}} '
                          r"([0-9.e+]+)", _metrics(system, service))
        return float(found.group(1)) if found else 0.0

    before = handled("intake", "cmd.intake.blow"), handled("ledger", "ledger-events")
    system.wait_summons(system.blow())
    assert handled("intake", "cmd.intake.blow") >= before[0] + 1
    wait_for(lambda: handled("ledger", "ledger-events") >= before[1] + 3, timeout=20,
             what="the ledger's batches counted")  # at least blown, issued, routed
    assert re.search(r'whistle_batch_messages_bucket\{consumer="ledger-events",le="512.0",service="ledger"\}',
                     _metrics(system, "ledger"))


def test_statements_sent_to_postgres_are_counted_per_service(system: System) -> None:
    """Each service's statements to Postgres (each a round trip), as its replicas serve them: a blow's group
    commit alone sends four (BEGIN, the whistle, its outbox row, COMMIT)."""
    def sent(service: str) -> float:
        found = re.search(rf'^whistle_db_statements_total\{{service="{service}"\}} ([0-9.e+]+)$',
                          _metrics(system, service), re.M)
        return float(found.group(1)) if found else 0.0

    before = sent("intake"), sent("ledger")
    system.wait_summons(system.blow())
    assert sent("intake") >= before[0] + 4
    wait_for(lambda: sent("ledger") >= before[1] + 4, timeout=20, what="the ledger's statements counted")
