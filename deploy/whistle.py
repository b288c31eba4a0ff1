#!/usr/bin/env python3
"""Bootstrap with nothing but Python ≥ 3.11: create .venv, install the project, then run it.

    python3 deploy/whistle.py up      # the whole system: embedded NATS + Postgres, services, demo data
    python3 deploy/whistle.py test    # every test (unit and end-to-end)
    python3 deploy/whistle.py ARGS…   # any other `whistle` command, e.g. `blow`, `show`, `docs`
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_environment() -> None:
    """(Re)install when the venv is missing or pyproject.toml changed since the last install."""
    if sys.version_info < (3, 11):
        sys.exit(f"Whistle needs Python ≥ 3.11; this is {sys.version.split()[0]}")
    python = BIN / "python"
    if not python.exists():
        print(f"creating {VENV} …", file=sys.stderr, flush=True)
        venv.create(VENV, with_pip=True)
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = VENV / ".whistle-installed"
    if not stamp.exists() or stamp.read_text() != want:
        print("installing Whistle and its dependencies …", file=sys.stderr, flush=True)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True, cwd=ROOT)
        subprocess.run([*pip, "-e", ".[test]"], check=True, cwd=ROOT)
        stamp.write_text(want)


def ensure_browser() -> None:
    """The console's browser tests drive Debian's Chromium: install it (and a CJK font) when missing."""
    if Path("/usr/bin/chromium").exists() or not Path("/usr/bin/apt-get").exists() or os.geteuid() != 0:
        return
    print("installing chromium for the console's browser tests …", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "fonts-wqy-zenhei"], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def main(argv: list[str]) -> None:
    ensure_environment()
    os.chdir(ROOT)
    if argv[:1] == ["test"]:
        ensure_browser()
        args = [str(BIN / "python"), "-m", "pytest", *argv[1:]]
    elif argv[:1] == ["lint"]:  # pyproject.toml's [tool.ruff]: lint and import order
        args = [str(BIN / "ruff"), "check", *(argv[1:] or ["."])]
    else:
        args = [str(BIN / "whistle"), *(argv or ["--help"])]
    os.execv(args[0], args)


if __name__ == "__main__":
    main(sys.argv[1:])
