"""docker-compose's NATS users (services/cli/nats_conf.py): the node configuration the nats-config job
writes from deploy/make-secrets.sh's secrets runs on a real nats-server, where each service's user may
publish only its own subjects and only the admin may declare streams; the nats-streams job declares them.

Docker is not available here: the job's commands run as processes, on the files the job would use."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from nats.js.errors import APIError

from services.cli import nats_conf
from services.cli.embedded import nats_server_binary, wait_for_port
from shared.settings import ServiceSettings
from tests.e2e.conftest import free_port
from tests.e2e.test_nats_permissions import _connect, _violations

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    """The secrets as deploy/make-secrets.sh writes them, the configuration the nats-config job writes for
    docker-compose, and a three-node cluster from the same function with local ports (its routes
    authenticate, or it never forms and the streams job fails)."""
    base = tmp_path_factory.mktemp("nats-conf")
    (base / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "make-secrets.sh", base / "deploy")
    subprocess.run(["sh", str(base / "deploy" / "make-secrets.sh")], check=True, capture_output=True, timeout=60)
    composed = nats_conf.write_configs(base / "secrets", base / "generated")
    permissions = nats_conf.declared_permissions()
    passwords = nats_conf.read_passwords(base / "secrets", nats_conf.users_of(permissions))
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    peers = [f"127.0.0.1:{cluster}" for _, cluster, _ in ports]
    procs = []
    try:
        for i, (port, cluster, http) in enumerate(ports):
            path = base / f"local-{i}.conf"
            path.write_text(nats_conf.node_config(f"n{i}", peers, passwords, permissions, port=port, cluster_port=cluster,
                                                  http_port=http, store_dir=str(base / f"js{i}")))
            log = (base / f"nats-{i}.log").open("wb")
            procs.append(subprocess.Popen([nats_server_binary(), "-c", str(path)], stdout=log, stderr=subprocess.STDOUT))
        for (port, _, _), proc in zip(ports, procs, strict=True):
            wait_for_port("127.0.0.1", port, proc=proc)
        yield {"url": f"nats://127.0.0.1:{ports[0][0]}", "urls": ",".join(f"nats://127.0.0.1:{p}" for p, _, _ in ports),
               "secrets": base / "secrets", "composed": composed}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)


def url(node: dict, user: str) -> str:
    password = (node["secrets"] / f"nats_{user}_password").read_text().strip()
    return f"nats://{user}:{password}@{node['url'].removeprefix('nats://')}"


def test_the_job_writes_each_node_a_private_configuration_naming_every_user(node: dict) -> None:
    assert [p.name for p in node["composed"]] == ["nats-1.conf", "nats-2.conf", "nats-3.conf"]
    for path in node["composed"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        config = json.loads(path.read_text())
        users = {u["user"]: u["password"] for u in config["authorization"]["users"]}
        for user in nats_conf.users_of(nats_conf.declared_permissions()):
            password = (node["secrets"] / f"nats_{user}_password").read_text().strip()
            assert user == "route" or users[user] == password, user
        assert "permissions" not in next(u for u in config["authorization"]["users"] if u["user"] == "admin")
        assert config["cluster"]["authorization"]["user"] == "route" and config["cluster"]["no_advertise"] is True
        assert [r.rsplit("@", 1)[1] for r in config["cluster"]["routes"]] == ["nats-1:6222", "nats-2:6222", "nats-3:6222"]


async def test_without_credentials_nothing_connects(node: dict) -> None:
    with pytest.raises(Exception) as refused:
        await _connect(node["url"], [])
    assert "authorization" in str(refused.value).lower()


async def test_a_service_publishes_its_own_events_and_not_anothers(node: dict) -> None:
    errors: list[str] = []
    nc = await _connect(url(node, "intake"), errors)
    try:
        await nc.publish("whistle.blown.0195f0a0-0000-7000-8000-000000000001", b"{}")  # its own
        await nc.publish("summons.issued.0195f0a0-0000-7000-8000-000000000001", b"{}")  # routing's
        await nc.flush()
        assert await _violations(errors, "summons.issued")
        assert not [e for e in errors if "whistle.blown" in e.lower()], errors
    finally:
        await nc.close()


async def test_only_the_admin_declares_the_streams_and_the_streams_job_does(node: dict) -> None:
    nc = await _connect(url(node, "routing"), [])
    try:
        with pytest.raises((APIError, nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await nc.jetstream(timeout=2).add_stream(name="FORGED", subjects=["forged.>"])
    finally:
        await nc.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "WHISTLE_"))}
    env.update(NATS_URL=node["urls"], NATS_USER="admin", WHISTLE_STREAM_REPLICAS="3", NATS_PASSWORD_FILE=str(node["secrets"] / "nats_admin_password"))
    done = subprocess.run([sys.executable, "-m", "services.cli.nats_conf", "streams"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    nc = await _connect(url(node, "admin"), [])
    try:
        names = {s.config.name for s in await nc.jetstream().streams_info()}
    finally:
        await nc.close()
    assert {"EVENTS", "CLOCKS", "DEADLETTER", "ADVISORIES"} <= names, names


def test_a_service_reads_its_nats_password_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret/pass@word\n")
    s = ServiceSettings(nats_url="nats://a:4222,nats://b:4222", nats_user="intake", nats_password_file=tmp_path / "pw")
    assert s.nats_url == "nats://intake:s3cret%2Fpass%40word@a:4222,nats://intake:s3cret%2Fpass%40word@b:4222"
    with pytest.raises(ValueError, match="NATS_USER"):
        ServiceSettings(nats_password_file=tmp_path / "pw")


def test_a_missing_password_file_is_named_and_no_password_printed(tmp_path: Path) -> None:
    (tmp_path / "nats_admin_password").write_text("x" * 40)
    with pytest.raises(SystemExit, match="nats_route_password"):
        nats_conf.read_passwords(tmp_path, ["admin", "route"])


async def test_the_erase_job_deletes_an_erased_reporters_whistle_blown_once_its_consumers_have_it(node: dict) -> None:
    """docker-compose's log-erasure job, as the admin: a whistle.blown one durable consumer has not taken
    stays, and so does one that a durable the services declare is not there to have taken; once every one
    has it, it goes; the whistle's other events stay."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    from services.cli.nats_conf import declared_takers
    from shared.ids import uuid7
    from shared.partitions import DEFAULT_PARTITIONS, stored_subject
    from shared.runtime.routes import subject_matches
    from shared.streams import ensure_streams

    whistle_id = str(uuid7())
    nc = await _connect(url(node, "admin"), [])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "WHISTLE_"))}
    env.update(NATS_URL=node["urls"], NATS_USER="admin", NATS_PASSWORD_FILE=str(node["secrets"] / "nats_admin_password"))
    job = None
    try:
        js = nc.jetstream()
        await ensure_streams(js, 3)  # as the streams job does (this test may run alone)
        await js.add_consumer("EVENTS", ConsumerConfig(durable_name="slow-reader", filter_subject="whistle.blown.>",
                                                       ack_policy=AckPolicy.EXPLICIT))
        for event in ("whistle.blown", "whistle.reporter_erased"):
            await js.publish(f"{event}.{whistle_id}", b"{}")
        blown = stored_subject("whistle.blown", whistle_id, DEFAULT_PARTITIONS)
        job = subprocess.Popen([sys.executable, "-m", "services.cli.nats_conf", "erase"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        await asyncio.sleep(4)  # two rounds of the job
        assert (await js.get_msg("EVENTS", subject=blown)).data == b"{}", "deleted before its consumer took it"
        reader = await js.pull_subscribe_bind(durable="slow-reader", stream="EVENTS")
        for m in await reader.fetch(10, timeout=5):
            await m.ack()
        # the services' own partition durables live in NATS's memory: until each is there (made again
        # from its floor after a restart of NATS, here never made) none of them has said it took it
        await asyncio.sleep(4)
        assert (await js.get_msg("EVENTS", subject=blown)).data == b"{}", "deleted while a service's durable was gone"
        last = (await js.stream_info("EVENTS")).state.last_seq
        for name, filters in declared_takers():
            if any(subject_matches(f, blown) for f in filters):  # made as a service makes them, from its floor
                await js.add_consumer("EVENTS", ConsumerConfig(
                    durable_name=name, filter_subjects=list(filters), ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last + 1, mem_storage=True))
        for _ in range(100):
            try:
                await js.get_msg("EVENTS", subject=blown)
            except NotFoundError:
                break
            await asyncio.sleep(0.1)
        else:
            job.terminate()
            raise AssertionError("the erased reporter's whistle.blown is still in the log: "
                                 + (job.stdout.read()[-3000:].decode(errors="replace") if job.stdout else ""))
        erased = stored_subject("whistle.reporter_erased", whistle_id, DEFAULT_PARTITIONS)
        assert (await js.get_msg("EVENTS", subject=erased)).data == b"{}"  # the fact stays
        job.terminate()
        assert job.wait(timeout=15) in (0, -15), job.stdout.read()[-2000:] if job.stdout else ""
    finally:
        if job is not None and job.poll() is None:
            job.kill()
        await nc.close()
