"""The test fixtures' free ports: a port is bound only when its server starts, perhaps many minutes after
it was handed out, so no port may be handed out twice in one test session, nor one already in use."""

from __future__ import annotations

import socket

import pytest

from tests.e2e import conftest
from tests.e2e.conftest import free_port, free_port_block


def draws(monkeypatch: pytest.MonkeyPatch, *ports: int) -> None:
    """The next draws of the port picker, in order."""
    it = iter(ports)
    monkeypatch.setattr(conftest.random, "randrange", lambda *_: next(it))


def test_no_port_is_handed_out_twice_single_or_in_a_block(monkeypatch: pytest.MonkeyPatch):
    first = free_port()
    draws(monkeypatch, first, first - 3, first + 20)  # the port itself, then a block over it, then elsewhere
    assert free_port_block(5) == first + 20
    draws(monkeypatch, first + 22, first + 40)  # inside the block just handed out
    assert free_port() == first + 40


def test_a_port_something_listens_on_is_never_handed_out(monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        taken = listener.getsockname()[1]
        listener.listen()
        draws(monkeypatch, taken, taken)
        with pytest.raises(StopIteration):
            free_port()


def test_ports_are_many_and_below_the_ephemeral_range():
    handed = [free_port() for _ in range(1500)]
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    assert len(set(handed)) == 1500 and all(10000 <= p < low for p in handed)
