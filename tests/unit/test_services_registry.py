"""One list of services: the deployment files name the same ones as shared/services.py."""

from __future__ import annotations

import re
from pathlib import Path

from shared.services import BACKGROUND, NAMES, SERVICES

ROOT = Path(__file__).resolve().parents[2]


def compose_services() -> set[str]:
    """The top-level keys under `services:` in docker-compose.yml (two-space indent)."""
    text = (ROOT / "docker-compose.yml").read_text()
    block = text.split("\nservices:\n", 1)[1].split("\n\n# ---", 1)[0]
    block = re.split(r"\n(?=[a-z])", block, maxsplit=1)[0]  # up to the next top-level key
    return set(re.findall(r"^  ([a-z0-9-]+):\s*$", block, re.M))


def prometheus_targets() -> set[str]:
    """The hosts Prometheus scrapes: every `targets:` and `dns_sd_configs` name of deploy/prometheus.yml."""
    text = (ROOT / "deploy" / "prometheus.yml").read_text()
    live = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    hosts = set(re.findall(r'"([a-z0-9-]+):\d+"', live))  # static targets
    for names in re.findall(r"names:\s*\[([^\]]*)\]", live):  # DNS-discovered: every replica of a service
        hosts |= set(re.findall(r'"([a-z0-9-]+)"', names))
    return hosts


def test_every_service_is_built_by_its_own_package():
    for service in SERVICES:
        assert (ROOT / "services" / service.name / "app.py").exists(), service.name
    assert NAMES[-1] == "gateway" and "gateway" not in BACKGROUND


def test_docker_compose_runs_every_service_and_no_unknown_one():
    composed = compose_services()
    gateways = {s for s in composed if re.fullmatch(r"gateway-\d+", s)}
    assert set(BACKGROUND) <= composed
    assert gateways, "no gateway replica in docker-compose.yml"
    others = composed - set(BACKGROUND) - gateways
    assert others <= {"postgres", "nats-1", "nats-2", "nats-3", "caddy", "prometheus", "grafana", "nats-exporter",
                      "postgres-exporter", "alertmanager"}, others


def test_prometheus_scrapes_every_service_compose_runs():
    targets = prometheus_targets()
    composed = compose_services()
    assert set(BACKGROUND) <= targets
    assert {s for s in composed if s.startswith("gateway-")} <= targets
    assert {t for t in targets if t in NAMES or t.startswith("gateway-")} <= composed | set(BACKGROUND)
