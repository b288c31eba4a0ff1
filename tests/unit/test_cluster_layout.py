"""`whistle up --cluster`: which nodes the runner starts, and NATS_URL read as a list of servers."""

from __future__ import annotations

from services.cli.runner import nats_nodes
from services.cli.settings import RunnerSettings
from shared.settings import nats_servers


def test_one_node_by_default_as_before():
    [node] = nats_nodes(RunnerSettings(nats_port=4250))
    assert (node.name, node.url, node.cluster_port, node.routes) == ("nats", "nats://127.0.0.1:4250", 0, ())


def test_three_nodes_each_routed_to_the_two_others():
    nodes = nats_nodes(RunnerSettings(cluster=True, nats_port=4250, nats_cluster_port=6250))
    assert [(n.name, n.port, n.cluster_port) for n in nodes] == [
        ("nats-1", 4250, 6250), ("nats-2", 4251, 6251), ("nats-3", 4252, 6252)]
    assert [n.routes for n in nodes] == [(6251, 6252), (6250, 6252), (6250, 6251)]


def test_nats_url_lists_every_node():
    assert nats_servers("nats://127.0.0.1:4250") == ["nats://127.0.0.1:4250"]
    assert nats_servers("nats://a:4222, nats://b:4222,nats://c:4222,") == [
        "nats://a:4222", "nats://b:4222", "nats://c:4222"]
