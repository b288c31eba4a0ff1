"""NATS users and what each may do: one user per service, allowed to publish only the subjects it owns
and to subscribe only to what it answers; the JetStream admin API only for the process that declares
the streams (`whistle up`'s runner, as `admin`).

What a service owns comes from its own declarations (`ServiceRuntime.emitted`, the events it
documents; `ServiceRuntime.served`, the requests it answers) plus the few subjects listed here: the
requests it makes of other services (`ASKS`) and what it publishes besides events (`ALSO`). The
nats-server reads the result as JSON (its configuration format is a superset of JSON).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from shared import subjects as s

ADMIN = "admin"  # the runner: declares streams, sets the demo's passwords; tests and benches use it too
GATEWAY = "gateway"
ROUTE = "route"  # the cluster's nodes among themselves

# requests a service makes of another one (as the system)
ASKS: dict[str, list[str]] = {
    "notifier": [s.QRY_ROUTING_KNOWN, s.QRY_INTAKE_REPORTER_CONTACT, s.QRY_RESPONSE_FOLLOW_UP_TOKEN],
    "routing": [s.CMD_NOTIFIER_SIGNIN_LINK],
}
# what a service publishes besides its events: the ledger tells the consoles what changed and replays
# dead letters to the subject they came from (any event, any clock message)
ALSO: dict[str, list[str]] = {
    "ledger": [s.LEDGER_BOARD_CHANGED, *s.EVENTS_SUBJECTS, f"{s.CLOCK_TIMER}.>", f"{s.CLOCK_DUE}.>"],
    "escalation": [f"{s.CLOCK_TIMER}.>"],  # the clocks' schedules (and their purges)
    "routing": [s.ROUTING_TOKENS_CHANGED],  # the revoked bearer tokens changed: every gateway reads them again
}

# JetStream as a reader: stream info, single messages, any consumer's info (lag, ack floors), acks (of
# what it was delivered: the ack subject comes with the message); never a stream's create, update,
# delete or purge. Consumers: only its own (`consumer_permissions`)
JS_CLIENT = [
    "$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>", "$JS.API.CONSUMER.INFO.*.*", "$JS.API.CONSUMER.LIST.*",
    "$JS.API.CONSUMER.NAMES.*", "$JS.ACK.>", "$JS.FC.>",
]
# a stream whose consumers a service makes under names of the moment (escalation's reconcile reads the
# CLOCKS stream, which only it consumes, through short-lived ones): any consumer of it
ANY_CONSUMER: dict[str, list[str]] = {"escalation": [s.CLOCKS_STREAM]}


def consumer_permissions(name: str, durables: Iterable[tuple[str, str]]) -> list[str]:
    """Its own consumers, by stream and name: create (with or without the filter in the subject), pull,
    reset (a partition taken over) and delete them. Another service's durable it cannot pull from (its
    messages would be taken from their owner), reset or delete."""
    allowed = []
    for stream, durable in [*durables, *((stream, "*") for stream in ANY_CONSUMER.get(name, []))]:
        for verb in ("CREATE", "DURABLE.CREATE", "DELETE", "RESET", "MSG.NEXT"):
            allowed.append(f"$JS.API.CONSUMER.{verb}.{stream}.{durable}")
        allowed.append(f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>")  # a single filter rides in the subject
    return allowed
JS_ADMIN_DENIED = [
    "$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.SNAPSHOT.>", "$JS.API.STREAM.RESTORE.>", "$JS.API.META.>",
    "$JS.API.SERVER.>", "$JS.API.ACCOUNT.>", "$SYS.>",
]


def service_permissions(name: str, emitted: Iterable[str], served: Iterable[str],
                        durables: Iterable[tuple[str, str]] = ()) -> dict:
    """A service's permissions: its events (`<family>.<verb>.<whistle id>`), its dead letters, what it asks,
    what `ALSO` gives it and its own `durables` (stream, name); to subscribe, its requests, its health and
    the replies to its own requests; both, its relay's forwards (`relay.<service>`)."""
    publish = [f"{subject}.*" for subject in emitted]
    forward = f"{s.RELAY_FORWARD}.{name}"  # outbox rows between its own replicas, for the relay that leads
    publish += [f"{s.DEADLETTER}.{name}", forward, *ASKS.get(name, []), *ALSO.get(name, []), *JS_CLIENT,
                *consumer_permissions(name, durables)]
    subscribe = [*served, f"{s.HEALTH}.{name}", forward, "_INBOX.>"]
    return {"publish": {"allow": sorted(set(publish)), "deny": JS_ADMIN_DENIED},
            "subscribe": {"allow": sorted(set(subscribe))}, "allow_responses": True}


def gateway_permissions(notices: Iterable[str] = ()) -> dict:
    """The gateway asks every service and listens to the notices the consoles and token checks need; no
    JetStream at all."""
    return {"publish": {"allow": ["cmd.>", "qry.>", f"{s.HEALTH}.*"], "deny": ["$JS.>", "$SYS.>"]},
            "subscribe": {"allow": ["_INBOX.>", s.LEDGER_BOARD_CHANGED, *notices]}}


def passwords(path: Path, names: Iterable[str]) -> dict[str, str]:
    """Each user's password, made once and kept in `path` (0600 from its first byte); new names added."""
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [n for n in names if n not in known]
    if missing or not path.exists():
        known.update({n: secrets.token_urlsafe(24) for n in missing})
        write_private(path, json.dumps(known, indent=2))
    return known


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read, never readable by others even for an instant."""
    part = path.with_name(path.name + ".part")
    part.unlink(missing_ok=True)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    part.replace(path)


def server_config(users: dict[str, str], permissions: dict[str, dict], *, cluster: dict | None = None) -> str:
    """nats-server configuration: the users (the admin without limits) and, for a node of a cluster,
    routes that must authenticate as `ROUTE`."""
    config: dict = {"authorization": {"users": [
        {"user": name, "password": password, **({"permissions": permissions[name]} if name in permissions else {})}
        for name, password in users.items() if name != ROUTE
    ]}}
    if cluster is not None:
        routes = [f"nats-route://{ROUTE}:{quote(users[ROUTE], safe='')}@127.0.0.1:{port}" for port in cluster["routes"]]
        # no_advertise: clients know every node from NATS_URL, with their credentials; a node's advertised
        # address carries none, and a client reconnecting to it after a node dies would be refused
        config["cluster"] = {"name": cluster["name"], "listen": f"127.0.0.1:{cluster['port']}", "routes": routes,
                             "authorization": {"user": ROUTE, "password": users[ROUTE]}, "no_advertise": True}
    return json.dumps(config, indent=2)


def with_user(url: str, user: str, password: str) -> str:
    """A NATS_URL (one server or several, comma-separated) whose every server carries the user's credentials."""
    out = []
    for one in url.split(","):
        parts = urlsplit(one.strip())
        host = parts.hostname or "127.0.0.1"
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
        out.append(urlunsplit(parts._replace(netloc=netloc)))
    return ",".join(out)
