"""NATS users for a deployment: each node's configuration written from the secrets, and the streams
declared as the admin (docker-compose.yml runs both as one-shot jobs before the services start).

    python -m services.cli.nats_conf config --secrets /run/secrets --out /etc/nats/generated
    python -m services.cli.nats_conf streams            # NATS_URL, NATS_USER=admin, NATS_PASSWORD_FILE
    python -m services.cli.nats_conf erase              # the same; runs until stopped

`config` writes `<node>.conf` for each node of the cluster: its name, ports and JetStream store, the
routes to the other nodes authenticated as `route`, and one user per service allowed what the service
declares (shared/nats_auth.py, the same permissions `whistle up` gives the embedded server). Each
password is the secret file `nats_<user>_password` (deploy/make-secrets.sh). The files are 0600: they
hold every password.

`streams` declares every stream as the admin: the services may not (their users are denied the
JetStream admin API), so they run with WHISTLE_DECLARE_STREAMS=false and wait for the streams.
`erase` deletes an erased reporter's whistle.blown from the event log as the admin
(shared/log_erasure.py; `whistle up`'s runner does it in a thread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import quote

from shared import nats_auth, subjects
from shared.partitions import DEFAULT_PARTITIONS

# core subjects the gateway listens to besides the board's: routing's notice that the revoked tokens
# changed (services/gateway/revocations.py)
GATEWAY_NOTICES: tuple[str, ...] = (subjects.ROUTING_TOKENS_CHANGED,)
NODES = ("nats-1", "nats-2", "nats-3")
CLUSTER = "whistle"


def declared_runtimes() -> dict:
    """Each background service's runtime as it declares itself (built as it runs, its handlers unused)."""
    from shared.services import SERVICES

    saved = os.environ.get("WHISTLE_AUTH_SECRET")
    os.environ.setdefault("WHISTLE_AUTH_SECRET", secrets.token_urlsafe(32))  # building signs nothing
    try:
        return {service.name: service.build() for service in SERVICES if service.background}
    finally:
        if saved is None:
            os.environ.pop("WHISTLE_AUTH_SECRET", None)


def declared_takers(partitions: int = DEFAULT_PARTITIONS) -> list[tuple[str, tuple[str, ...]]]:
    """Every durable the services keep on the events stream, (name, filters), for the log erasure."""
    return [taker for runtime in declared_runtimes().values() for taker in runtime.event_takers(partitions)]


def declared_permissions(partitions: int = DEFAULT_PARTITIONS) -> dict[str, dict]:
    """Each service's NATS permissions, from what it declares, its durables once per partition."""
    runtimes = declared_runtimes()
    permissions = {name: nats_auth.service_permissions(name, runtime.emitted, runtime.served,
                                                       runtime.durables(partitions))
                   for name, runtime in runtimes.items()}
    permissions[nats_auth.GATEWAY] = nats_auth.gateway_permissions(GATEWAY_NOTICES)
    return permissions


def users_of(permissions: dict[str, dict]) -> list[str]:
    """Every NATS user: the admin, the cluster's routes and one per service (the gateway included)."""
    return [nats_auth.ADMIN, nats_auth.ROUTE, *permissions]


def read_passwords(folder: Path, users: list[str]) -> dict[str, str]:
    """`nats_<user>_password` of each user; SystemExit naming the missing file (never a password)."""
    found = {}
    for user in users:
        path = folder / f"nats_{user}_password"
        password = path.read_text().strip() if path.exists() else ""
        if len(password) < 16:
            raise SystemExit(f"{path}: missing or shorter than 16 characters (deploy/make-secrets.sh makes it)"
                             f" / {path}：缺失或少于 16 个字符")
        found[user] = password
    return found


def node_config(node: str, peers: list[str], passwords: dict[str, str], permissions: dict[str, dict], *,
                port: int = 4222, cluster_port: int = 6222, http_port: int = 8222,
                store_dir: str = "/data/jetstream") -> str:
    """One node's nats-server configuration (JSON, which nats-server reads as its own format); `peers`
    every node's route address, host:port."""
    config = json.loads(nats_auth.server_config(passwords, permissions))
    route = quote(passwords[nats_auth.ROUTE], safe="")
    config.update({
        "server_name": node, "port": port, "http_port": http_port,
        # limits per node; every R3 stream stores a full copy on each node
        "jetstream": {"store_dir": store_dir, "max_memory_store": 256 * 2**20, "max_file_store": 10 * 2**30},
        "cluster": {
            "name": CLUSTER, "port": cluster_port,
            "authorization": {"user": nats_auth.ROUTE, "password": passwords[nats_auth.ROUTE]},
            # every node lists all of them; a route to itself is ignored by the server
            "routes": [f"nats-route://{nats_auth.ROUTE}:{route}@{peer}" for peer in peers],
            # clients know every node from NATS_URL, with their credentials
            "no_advertise": True,
        },
    })
    return json.dumps(config, indent=2)


def write_configs(secrets_dir: Path, out: Path, nodes: tuple[str, ...] = NODES,
                  partitions: int = DEFAULT_PARTITIONS) -> list[Path]:
    """`<node>.conf` for each node (docker-compose's: each the same ports on a host of its own)."""
    permissions = declared_permissions(partitions)
    passwords = read_passwords(secrets_dir, users_of(permissions))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for node in nodes:
        path = out / f"{node}.conf"
        nats_auth.write_private(path, node_config(node, [f"{n}:6222" for n in nodes], passwords, permissions))
        written.append(path)
    return written


async def declare_streams() -> None:
    """Every stream, as the admin (NATS_URL with NATS_USER and NATS_PASSWORD_FILE); retried while the
    cluster elects its meta leader."""
    import nats

    from shared.settings import ServiceSettings, nats_servers
    from shared.streams import ensure_streams

    settings = ServiceSettings()
    nc = await nats.connect(nats_servers(settings.nats_url), name="streams")
    try:
        for attempt in range(60):
            try:
                await ensure_streams(nc.jetstream(), settings.stream_replicas, settings.partitions,
                                     settings.reporter_retention_days)
                return
            except Exception as exc:  # noqa: BLE001 — no meta leader yet: tried again
                if attempt == 59:
                    raise
                print(f"streams not declared yet ({exc!r}); again in 2 s", file=sys.stderr)
                await asyncio.sleep(2)
    finally:
        await nc.close()


async def erase_forever() -> None:
    """shared/log_erasure.py as the admin (NATS_URL, NATS_USER, NATS_PASSWORD_FILE) until SIGTERM."""
    import signal

    from shared.log_erasure import erase
    from shared.settings import ServiceSettings

    settings = ServiceSettings()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await erase(settings.nats_url, settings.partitions, stop, declared_takers(settings.partitions))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.cli.nats_conf", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="write each node's configuration from the secrets")
    config.add_argument("--secrets", type=Path, default=Path("/run/secrets"))
    config.add_argument("--out", type=Path, default=Path("/etc/nats/generated"))
    config.add_argument("--nodes", default=",".join(NODES))
    config.add_argument("--partitions", type=int, default=int(os.environ.get("WHISTLE_PARTITIONS", DEFAULT_PARTITIONS)),
                        help="as the services run with (WHISTLE_PARTITIONS): their durables are named by partition")
    commands.add_parser("streams", help="declare every stream as the admin")
    commands.add_parser("erase", help="as the admin, delete erased reporters' whistle.blown from the event log"
                        " (runs until stopped)")
    args = parser.parse_args(argv)
    if args.command == "config":
        for path in write_configs(args.secrets, args.out, tuple(args.nodes.split(",")), args.partitions):
            print(f"wrote {path}")
    elif args.command == "streams":
        asyncio.run(declare_streams())
    else:
        asyncio.run(erase_forever())


if __name__ == "__main__":
    main()
