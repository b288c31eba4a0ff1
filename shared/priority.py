"""CPU priority: read models yield the CPU to intake and timers when the machine is busy.

On Linux with autogrouping (kernel.sched_autogroup_enabled=1, the default on desktop and many server
kernels) the scheduler first shares the CPU between autogroups (one per session) and only then by
nice within a group. Every service runs in its own session, and so does every Postgres backend
(PostgreSQL calls setsid() in each child), so a plain nice changes nothing between them: measured
here, a ledger at nice 10 still took as much CPU as before. The autogroup's own nice
(/proc/PID/autogroup) is what counts, so both are set.
"""

from __future__ import annotations

import contextlib
import os


def lower(pid: int, nice: int) -> bool:
    """Give process `pid` (0: this one) at most the priority of `nice`; never raises it. True if set."""
    if nice <= 0:
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, pid, max(nice, os.getpriority(os.PRIO_PROCESS, pid)))
    except OSError:
        return False
    current = autogroup_nice(pid or "self")
    if current is not None and nice > current:
        with contextlib.suppress(OSError):  # not allowed: the plain nice is what there is
            with open(f"/proc/{pid or 'self'}/autogroup", "w") as f:
                f.write(str(nice))
    return True


def autogroup_nice(pid: int | str) -> int | None:
    """The nice of the autogroup `pid` runs in, or None without autogrouping."""
    try:
        with open(f"/proc/{pid}/autogroup") as f:
            return int(f.read().rsplit("nice", 1)[1])
    except (OSError, ValueError, IndexError):
        return None


def lower_children(parent: int, prefix: bytes, nice: int) -> list[int]:
    """Give the children of `parent` whose command line starts with `prefix` (a Postgres server's
    autovacuum workers, say) at most the priority of `nice`; the pids lowered by this call."""
    try:
        with open(f"/proc/{parent}/task/{parent}/children") as f:
            children = [int(pid) for pid in f.read().split()]
    except (OSError, ValueError):
        return []
    lowered = []
    for pid in children:
        try:
            if not named(pid, prefix) or os.getpriority(os.PRIO_PROCESS, pid) >= nice:
                continue
        except OSError:  # gone before its priority was read
            continue
        if lower(pid, nice):
            lowered.append(pid)
    return lowered


def named(pid: int, prefix: bytes) -> bool:
    """Whether process `pid` of this host has a command line starting with `prefix` (False if none)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().startswith(prefix)
    except OSError:
        return False
