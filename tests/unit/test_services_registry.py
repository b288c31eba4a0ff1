"""One list of services: the deployment files name the same ones as shared/services.py."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

from shared import subjects
from shared.nats_auth import ASKS
from shared.services import BACKGROUND, NAMES, SERVICES
from shared.signing import Signer, Verifier

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
    assert others <= {"postgres", "db-roles", "nats-config", "nats-streams", "log-erasure", "nats-1", "nats-2", "nats-3", "caddy", "prometheus", "grafana", "nats-exporter",
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
        # its own passwords, the signers' keys for itself, and its own command key if it signs (nats_auth.ASKS)
        mounted = re.search(r"secrets: \[([^\]]*)\]", block).group(1).replace(" ", "").split(",")
        signs = [f"command_key_{service}"] if service in ASKS else []
        assert mounted == [f"db_{service}_password", f"nats_{service}_password", f"command_verify_keys_{service}",
                           *signs], (service, mounted)
    assert "services.cli.db_roles" in compose_block("db-roles")


def test_each_process_gets_only_its_own_command_key_and_only_the_keys_meant_for_it():
    for gateway in ("gateway-1", "gateway-2"):
        block = compose_block(gateway)
        assert "secrets: [nats_gateway_password, command_key_gateway]" in block
        assert "WHISTLE_COMMAND_KEY_FILE: /run/secrets/command_key_gateway" in block
    text = (ROOT / "docker-compose.yml").read_text()
    for service in BACKGROUND:
        block = compose_block(service)
        key = re.findall(r"WHISTLE_COMMAND_KEY_FILE: (\S+)", block)
        assert key == ([f"/run/secrets/command_key_{service}"] if service in ASKS else []), (service, key)
        verify = re.findall(r"WHISTLE_COMMAND_VERIFY_KEYS_FILE: (\S+)", block)
        assert verify == [f"/run/secrets/command_verify_keys_{service}"], (service, verify)
        assert f"command_verify_keys_{service}: {{ file: ./secrets/command_verify_keys_{service} }}" in text
    made = (ROOT / "deploy" / "make-secrets.sh").read_text()
    for signer in ("gateway", *ASKS):
        assert f"command_key_{signer}: {{ file: ./secrets/command_key_{signer} }}" in text
        assert signer in made.split('signers="', 1)[1].split('"', 1)[0].split()
    assert set(made.split('owners="', 1)[1].split('"', 1)[0].split()) == set(BACKGROUND)


def test_make_secrets_writes_keys_that_sign_and_verify_as_the_services_do(tmp_path: Path):
    """deploy/make-secrets.sh (sh and openssl) derives each service's keys as shared/signing.py does: a
    command the gateway signs verifies at its owner, and at no other service."""
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "make-secrets.sh", tmp_path / "deploy")
    subprocess.run(["sh", str(tmp_path / "deploy" / "make-secrets.sh")], check=True, capture_output=True, timeout=60)
    secrets = tmp_path / "secrets"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in secrets.iterdir())
    gateway = Signer.parse((secrets / "command_key_gateway").read_text())
    body = json.loads(gateway.body(subjects.CMD_RESPONSE_ACT, {"role": "responder", "id": "d-housing"}, {"a": 1}))
    for service in BACKGROUND:
        verifier = Verifier.parse((secrets / f"command_verify_keys_{service}").read_text())
        assert verifier.signers == {"gateway", *ASKS}
        assert (verifier.check(subjects.CMD_RESPONSE_ACT, body) is None) == (service == "response"), service
    before = (secrets / "command_verify_keys_response").read_text()
    subprocess.run(["sh", str(tmp_path / "deploy" / "make-secrets.sh")], check=True, capture_output=True, timeout=60)
    assert (secrets / "command_verify_keys_response").read_text() == before  # kept once made


def test_every_process_connects_to_nats_as_its_own_user_and_only_the_admin_declares_streams():
    """docker-compose's NATS has users (services/cli/nats_conf.py, tests/component/test_nats_conf.py):
    each service and gateway as itself, its password a secret file; the nodes' configuration written by
    the nats-config job from every user's secret; the streams declared by the nats-streams job as the admin."""
    text = (ROOT / "docker-compose.yml").read_text()
    env = text.split("\nx-env: &env\n", 1)[1].split("\n\n", 1)[0]
    assert 'WHISTLE_DECLARE_STREAMS: "false"' in env
    for service in [*BACKGROUND, "gateway-1", "gateway-2"]:
        user = "gateway" if service.startswith("gateway") else service
        block = compose_block(service)
        assert f"NATS_USER: {user}" in block and f"NATS_PASSWORD_FILE: /run/secrets/nats_{user}_password" in block
        assert f"nats_{user}_password" in re.search(r"secrets: \[([^\]]*)\]", block).group(1), service
    config = compose_block("nats-config")
    mounted = set(re.search(r"secrets: \[([^\]]*)\]", config, re.S).group(1).replace(" ", "").replace("\n", "").split(","))
    users = {"admin", "route", "gateway", *BACKGROUND}
    assert mounted == {f"nats_{u}_password" for u in users}
    made = (ROOT / "deploy" / "make-secrets.sh").read_text()
    assert all(f"nats_{u}_password" in made for u in users)
    assert "services.cli.nats_conf" in config and '"config"' in config
    streams = compose_block("nats-streams")
    assert "NATS_USER: admin" in streams and '"streams"' in streams
    erasing = compose_block("log-erasure")  # the admin deletes erased reporters' events; no service may
    assert "NATS_USER: admin" in erasing and '"erase"' in erasing
    for n in (1, 2, 3):
        node = compose_block(f"nats-{n}")
        assert f'"/etc/nats/generated/nats-{n}.conf"' in node and "nats-config:/etc/nats/generated:ro" in node
    x_nats = text.split("\nx-nats: &nats\n", 1)[1].split("\n\n", 1)[0]
    assert "nats-config: { condition: service_completed_successfully }" in x_nats


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


def test_docker_compose_is_valid_yaml_and_every_service_names_its_secrets():
    """The file parses (a misplaced line once put Grafana's secrets inside its environment), and every secret
    a service mounts is declared."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    declared = set(compose["secrets"])
    for name, service in compose["services"].items():
        assert set(service.get("secrets") or ()) <= declared, name
        assert isinstance(service.get("environment") or {}, dict), name
    assert compose["services"]["grafana"]["secrets"] == ["grafana_admin_password"]
    assert "nats-config" in compose["volumes"]
