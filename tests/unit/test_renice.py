"""CPU priority of a service's Postgres backends: only a Postgres process of this host is touched."""

from __future__ import annotations

import os
import subprocess
import time

from shared.db import renice_backend
from shared.priority import autogroup_nice, lower_children


def _spawn(argv0: str) -> subprocess.Popen:
    proc = subprocess.Popen(["bash", "-c", f"exec -a '{argv0}' sleep 30"], start_new_session=True)
    for _ in range(100):  # until exec has replaced bash's command line
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            if f.read().startswith(argv0.encode()):
                return proc
        time.sleep(0.01)
    raise AssertionError("the child did not exec")


def test_a_postgres_backend_of_this_host_gets_the_priority_and_nothing_else_does():
    backend, other = _spawn("postgres: whistle-ledger"), _spawn("not-a-backend")
    # Each child has its own session (as a Postgres backend has), so its own autogroup where the
    # kernel groups (None without; the test process itself may sit in the root group, which shows none)
    grouped = autogroup_nice(backend.pid) is not None
    try:
        assert renice_backend(backend.pid, 7) is True
        assert os.getpriority(os.PRIO_PROCESS, backend.pid) == 7
        assert autogroup_nice(backend.pid) == (7 if grouped else None)  # the group yields too
        assert renice_backend(backend.pid, 3) is True  # never raised back: 7 stays
        assert os.getpriority(os.PRIO_PROCESS, backend.pid) == 7
        assert autogroup_nice(backend.pid) == (7 if grouped else None)
        assert renice_backend(other.pid, 7) is False
        assert os.getpriority(os.PRIO_PROCESS, other.pid) == 0
        assert autogroup_nice(other.pid) == (0 if grouped else None)
    finally:
        for p in (backend, other):
            p.kill()
            p.wait()
    assert renice_backend(backend.pid, 7) is False  # gone (another host's pid, say): left alone


def test_only_the_children_named_so_are_lowered_once():
    parent = subprocess.Popen(
        ["bash", "-c", "(exec -a 'postgres: autovacuum worker' sleep 30) & (exec -a 'postgres: walwriter' sleep 30) & wait"],
        start_new_session=True)
    try:
        for _ in range(200):  # until both children have exec'd
            with open(f"/proc/{parent.pid}/task/{parent.pid}/children") as f:
                kids = [int(p) for p in f.read().split()]
            names = {}
            for pid in kids:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    names[f.read().split(b"\0")[0]] = pid
            if set(names) == {b"postgres: autovacuum worker", b"postgres: walwriter"}:
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"children did not exec: {names}")
        worker, walwriter = names[b"postgres: autovacuum worker"], names[b"postgres: walwriter"]
        assert lower_children(parent.pid, b"postgres: autovacuum worker", 10) == [worker]
        assert os.getpriority(os.PRIO_PROCESS, worker) == 10
        assert os.getpriority(os.PRIO_PROCESS, walwriter) == 0
        assert lower_children(parent.pid, b"postgres: autovacuum worker", 10) == []  # already there
    finally:
        os.killpg(parent.pid, 9)
        parent.wait()
    assert lower_children(parent.pid, b"postgres: autovacuum worker", 10) == []  # the parent is gone
