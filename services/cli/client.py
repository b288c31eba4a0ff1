"""A thin HTTP client of the API, authenticated from .whistle/credentials.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx


class ClientError(RuntimeError):
    pass


def load_credentials(home: Path) -> dict:
    path = home / "credentials.json"
    if not path.exists():
        raise ClientError(f"{path} not found: run `whistle up` first / 请先运行 whistle up")
    return json.loads(path.read_text())


def token_for(creds: dict, who: str) -> str:
    """`dispatcher`, `supervisor` or a responder id."""
    if who in ("dispatcher", "supervisor"):
        return creds[who]["token"]
    for r in creds["responders"]:
        if r["id"] == who:
            return r["token"]
    raise ClientError(f"no credentials for {who!r} / 无此身份的令牌")


def client(home: Path, who: str) -> httpx.Client:
    creds = load_credentials(home)
    base = os.environ.get("WHISTLE_BASE", creds["base_url"])
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token_for(creds, who)}"}, timeout=10)
