"""`whistle up`'s secrets: the system's secret and the bearer token signing keys, made once per home.

    <home>/secret         WHISTLE_AUTH_SECRET: one-tap and follow-up links, the console's cookies
    <home>/signing_keys   WHISTLE_SIGNING_KEYS: "kid:secret,kid:secret", the first signs
    <home>/command-keys.json  the secrets commands are signed with, one per signer (shared/signing.py):
                          each signer gets its own as WHISTLE_COMMAND_KEY, every process all the public
                          ones as WHISTLE_COMMAND_VERIFY_KEYS

Each is taken from the environment when set there (refused if short), else read from its file, made
with `secrets.token_urlsafe` the first time. Every file holding a secret or a token (these two,
credentials.json, command-keys.json) is created readable by its owner only from its first byte (os.open with O_CREAT,
O_EXCL and 0o600, never a chmod afterwards), written whole under another name, then renamed.

`whistle rotate-key` puts a new signing key first and keeps the one before it second: tokens it
signed still work (nobody is logged out) until the next rotation drops it; both apply from the next
`whistle up`, which writes credentials.json again with tokens of the new key.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from shared import signing
from shared.auth import KeyRing, check_secret

SECRET_FILE = "secret"
KEYS_FILE = "signing_keys"
COMMAND_KEYS_FILE = "command-keys.json"
KEEP_KEYS = 2  # the signing key and the one before it: two valid while tokens of the old one go round


def write_private(path: Path, text: str) -> None:
    """`text` into `path`, readable and writable by its owner only from the first byte, replaced whole."""
    part = path.with_name(path.name + ".part")
    part.unlink(missing_ok=True)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1  # the file object owns it now
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    part.replace(path)


def _read_private(path: Path) -> str | None:
    """A secret file's text, None if there is none; one left readable by others is made private again."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & 0o077:  # an older `whistle up` made it, or someone loosened it: close it before using it
        os.chmod(path, 0o600)
    return path.read_text(encoding="utf-8").strip()


def new_kid() -> str:
    return time.strftime("k%Y%m%d%H%M%S", time.gmtime())


def auth_secret(home: Path, given: str | None) -> str:
    """WHISTLE_AUTH_SECRET: as given (at least 32 bytes), else `<home>/secret`, made the first time."""
    if given:
        return check_secret(given, "WHISTLE_AUTH_SECRET")
    path = home / SECRET_FILE
    known = _read_private(path)
    if not known:
        known = secrets.token_urlsafe(32)
        write_private(path, known + "\n")
    return check_secret(known, str(path))


def signing_keys(home: Path, given: str | None) -> str:
    """WHISTLE_SIGNING_KEYS ("kid:secret,…", the first signs): as given, else `<home>/signing_keys`,
    made with one key the first time. Checked either way (SecretError for a short or malformed one)."""
    if given:
        KeyRing.parse(given)
        return given
    path = home / KEYS_FILE
    known = _read_private(path)
    if not known:
        known = f"{new_kid()}:{secrets.token_urlsafe(32)}"
        write_private(path, known + "\n")
    KeyRing.parse(known, str(path))
    return known


def command_keys(home: Path, names: list[str]) -> dict[str, str]:
    """Each signer's private key (base64), kept in `<home>/command-keys.json` (0600 from its first byte),
    made the first time a name is asked for; the others kept."""
    path = home / COMMAND_KEYS_FILE
    known: dict[str, str] = json.loads(_read_private(path) or "{}")
    missing = [n for n in names if n not in known]
    if missing:
        known.update({n: signing.new_key() for n in missing})
        home.mkdir(parents=True, exist_ok=True)
        write_private(path, json.dumps(known, indent=2) + "\n")
    return {n: known[n] for n in names}


def verify_keys(signers: dict[str, str], owners: Iterable[str]) -> str:
    """WHISTLE_COMMAND_VERIFY_KEYS for `owners`: each signer's key for each of them ("signer@owner:base64,…")."""
    return signing.pair_keys(signers, owners)


def rotate(home: Path) -> tuple[str, list[str]]:
    """A new signing key first in `<home>/signing_keys`, the one signing until now kept second and any
    older one dropped. The new kid and the kids kept (never the secrets)."""
    path = home / KEYS_FILE
    current = [k.strip() for k in (_read_private(path) or "").split(",") if k.strip()]
    kid = new_kid()
    while any(k.partition(":")[0] == kid for k in current):
        kid += "x"  # two rotations within a second
    keys = [f"{kid}:{secrets.token_urlsafe(32)}", *current][:KEEP_KEYS]
    spec = ",".join(keys)
    KeyRing.parse(spec, str(path))
    home.mkdir(parents=True, exist_ok=True)
    write_private(path, spec + "\n")
    return kid, [k.partition(":")[0] for k in keys]


def redacted(url: str) -> str:
    """A URL fit for a log: any password in it replaced (a log never holds a secret)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable url>"
