"""One list of services: the deployment files name the same ones as shared/services.py."""

from __future__ import annotations

import re
from pathlib import Path

from shared.nats_auth import ASKS
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
    assert others <= {"postgres", "db-roles", "nats-1", "nats-2", "nats-3", "caddy", "prometheus", "grafana", "nats-exporter",
                      "postgres-exporter", "alertmanager"}, others


def test_prometheus_scrapes_every_service_compose_runs():
    targets = prometheus_targets()
    composed = compose_services()
    assert set(BACKGROUND) <= targets
    assert {s for s in composed if s.startswith("gateway-")} <= targets
    assert {t for t in targets if t in NAMES or t.startswith("gateway-")} <= composed | set(BACKGROUND)


def compose_block(service: str) -> str:
    """One service's block of docker-compose.yml, up to the next service or top-level key."""
    text = (ROOT / "docker-compose.yml").read_text()
    return re.split(r"\n(?=  [a-z0-9-]+:\s*\n|[a-z#])", text.split(f"\n  {service}:\n", 1)[1], maxsplit=1)[0]


def test_compose_has_no_default_password_and_every_secret_comes_from_a_file():
    text = (ROOT / "docker-compose.yml").read_text()
    live = "\n".join(line.split(" #", 1)[0] for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"PASSWORD:\s*\S", live), "a password written in docker-compose.yml"
    assert not re.search(r":-admin\b|postgresql://[^@\s]+:[^@\s]+@", live), "a default or inline credential"
    declared = set(re.findall(r"^  ([a-z_]+): \{ file: \./secrets/\1 \}$", text, re.M))
    used = {name for names in re.findall(r"secrets: \[([^\]]*)\]", live) for name in re.findall(r"[a-z_]+", names)}
    assert used and used <= declared, used - declared
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()


def test_each_service_logs_in_to_postgres_as_its_own_role_with_only_its_own_secret():
    for service in BACKGROUND:
        block = compose_block(service)
        assert f"DATABASE_URL: postgresql://{service}@postgres:5432/whistle" in block, service
        assert f"DATABASE_PASSWORD_FILE: /run/secrets/db_{service}_password" in block, service
        # its own password, every signer's public key, and its own command key if it signs (nats_auth.ASKS)
        mounted = re.search(r"secrets: \[([^\]]*)\]", block).group(1).replace(" ", "").split(",")
        signs = [f"command_key_{service}"] if service in ASKS else []
        assert mounted == [f"db_{service}_password", "command_verify_keys", *signs], (service, mounted)
    assert "services.cli.db_roles" in compose_block("db-roles")


def test_each_process_gets_only_its_own_command_key_and_every_public_one():
    for gateway in ("gateway-1", "gateway-2"):
        block = compose_block(gateway)
        assert "secrets: [command_verify_keys, command_key_gateway]" in block
        assert "WHISTLE_COMMAND_KEY_FILE: /run/secrets/command_key_gateway" in block
    for service in BACKGROUND:
        key = re.findall(r"WHISTLE_COMMAND_KEY_FILE: (\S+)", compose_block(service))
        assert key == ([f"/run/secrets/command_key_{service}"] if service in ASKS else []), (service, key)
    text = (ROOT / "docker-compose.yml").read_text()
    env = text.split("\nx-env: &env\n", 1)[1].split("\n\n", 1)[0]  # every Whistle process's environment
    assert "WHISTLE_COMMAND_VERIFY_KEYS_FILE: /run/secrets/command_verify_keys" in env
    made = (ROOT / "deploy" / "make-secrets.sh").read_text()
    for signer in ("gateway", *ASKS):
        assert f"command_key_{signer}: {{ file: ./secrets/command_key_{signer} }}" in text
        assert signer in made.split('signers="', 1)[1].split('"', 1)[0].split()


def test_monitoring_listens_on_the_host_only_and_the_edge_speaks_tls():
    for service in ("prometheus", "grafana", "nats-1"):
        published = re.findall(r'^\s+- "([^"]+)"', compose_block(service), re.M)
        assert published and all(p.startswith("127.0.0.1:") for p in published), (service, published)
    assert "--web.enable-lifecycle" not in "\n".join(
        line for line in compose_block("prometheus").splitlines() if not line.lstrip().startswith("#"))
    assert re.search(r'- "\$\{WHISTLE_HTTPS_PORT:-443\}:443"', compose_block("caddy"))
    caddy = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "auto_https off" not in caddy and "{$WHISTLE_SITE:localhost} {" in caddy
    assert not re.search(r"^:80 \{", caddy, re.M)
