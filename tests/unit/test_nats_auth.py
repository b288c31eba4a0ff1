"""shared/nats_auth.py: the users, permissions and server configuration `whistle up` generates."""

from __future__ import annotations

import json
import os
import stat

from shared import nats_auth
from shared import subjects as s


def test_a_service_may_publish_its_own_events_and_dead_letters_only():
    perms = nats_auth.service_permissions("intake", ["whistle.blown", "whistle.grouped"], [s.CMD_INTAKE_BLOW])
    allow, deny = perms["publish"]["allow"], perms["publish"]["deny"]
    assert "whistle.blown.*" in allow and "whistle.grouped.*" in allow and "deadletter.intake" in allow
    assert not any(a.startswith(("summons.", "sla.", "escalation.", "notification.", "cmd.", "qry.")) for a in allow)
    assert {"$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.CREATE.>",
            "$JS.API.STREAM.UPDATE.>"} <= set(deny)
    assert perms["subscribe"]["allow"] == sorted({s.CMD_INTAKE_BLOW, "health.intake", "relay.intake", "_INBOX.>"})
    assert "relay.intake" in allow and not any(a.startswith("relay.") and a != "relay.intake" for a in allow)
    assert perms["allow_responses"] is True


def test_requests_between_services_are_listed_and_the_gateway_has_no_jetstream():
    notifier = nats_auth.service_permissions("notifier", [], [])
    assert s.QRY_ROUTING_KNOWN in notifier["publish"]["allow"]
    assert s.CMD_RESPONSE_ACT not in notifier["publish"]["allow"]
    gateway = nats_auth.gateway_permissions()
    assert not any(a.startswith("$JS") for a in gateway["publish"]["allow"])
    assert "$JS.>" in gateway["publish"]["deny"]


def test_every_built_service_is_allowed_what_it_declares():
    from shared.services import SERVICES

    os.environ.setdefault("WHISTLE_AUTH_SECRET", "x" * 43)
    for service in SERVICES:
        if not service.background:
            continue
        runtime = service.build()
        perms = nats_auth.service_permissions(runtime.name, runtime.emitted, runtime.served)
        assert runtime.emitted or runtime.name == "ledger", runtime.name  # the ledger only reads
        for subject in runtime.emitted:
            assert f"{subject}.*" in perms["publish"]["allow"]
        assert set(runtime.served) <= set(perms["subscribe"]["allow"])
        assert all(sub.split(".")[1] == runtime.name for sub in runtime.served), runtime.served


def test_passwords_are_kept_in_a_file_only_the_owner_reads(tmp_path):
    path = tmp_path / "nats-users.json"
    first = nats_auth.passwords(path, ["admin", "intake"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = nats_auth.passwords(path, ["admin", "intake", "routing"])
    assert again["admin"] == first["admin"] and again["intake"] == first["intake"] and len(again["routing"]) >= 24
    assert json.loads(path.read_text()) == again


def test_server_config_and_urls():
    users = {"admin": "a", "intake": "p/w:1", "route": "r"}
    perms = {"intake": nats_auth.service_permissions("intake", [], [])}
    config = json.loads(nats_auth.server_config(users, perms, cluster={"name": "c", "port": 6000, "routes": (6001,)}))
    listed = {u["user"]: u for u in config["authorization"]["users"]}
    assert set(listed) == {"admin", "intake"} and "permissions" not in listed["admin"]
    assert listed["intake"]["permissions"] == perms["intake"]
    assert config["cluster"]["authorization"] == {"user": "route", "password": "r"}
    assert config["cluster"]["routes"] == ["nats-route://route:r@127.0.0.1:6001"]
    assert nats_auth.with_user("nats://127.0.0.1:1,nats://127.0.0.1:2", "intake", "p/w:1") == \
        "nats://intake:p%2Fw%3A1@127.0.0.1:1,nats://intake:p%2Fw%3A1@127.0.0.1:2"


def test_no_service_may_delete_a_message_of_any_stream():
    """An erased reporter's whistle.blown leaves the log through the admin (shared/log_erasure.py)."""
    for name in ("intake", "routing", "response", "escalation", "ledger", "notifier"):
        perms = nats_auth.service_permissions(name, [], [])
        assert "$JS.API.STREAM.MSG.DELETE.>" in perms["publish"]["deny"], name
        assert not any("MSG.DELETE" in a for a in perms["publish"]["allow"]), name


def test_a_service_may_make_pull_reset_and_delete_only_its_own_consumers():
    from shared.services import SERVICES

    os.environ.setdefault("WHISTLE_AUTH_SECRET", "x" * 43)
    runtimes = {s.name: s.build() for s in SERVICES if s.background}
    intake = runtimes["intake"]
    durables = intake.durables(4)
    assert ("EVENTS", "intake-events-p00") in durables and ("EVENTS", "intake-events-p03") in durables
    allow = nats_auth.service_permissions("intake", intake.emitted, intake.served, durables)["publish"]["allow"]
    for verb in ("CREATE", "DURABLE.CREATE", "DELETE", "RESET", "MSG.NEXT"):
        assert f"$JS.API.CONSUMER.{verb}.EVENTS.intake-events-p03" in allow
        assert not any(a.startswith(f"$JS.API.CONSUMER.{verb}.") and "routing" in a for a in allow)
    assert "$JS.API.CONSUMER.CREATE.EVENTS.intake-events-p03.>" in allow  # a filter in the subject
    assert "$JS.API.CONSUMER.>" not in allow and "$JS.API.CONSUMER.INFO.*.*" in allow  # anyone's lag, read only
    escalation = runtimes["escalation"]
    allow = nats_auth.service_permissions("escalation", [], [], escalation.durables(16))["publish"]["allow"]
    assert "$JS.API.CONSUMER.CREATE.CLOCKS.*.>" in allow  # its reconcile's short-lived readers of CLOCKS
    assert "$JS.API.CONSUMER.DELETE.EVENTS.*" not in allow
