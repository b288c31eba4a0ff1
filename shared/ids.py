"""Time-ordered identifiers (UUIDv7, RFC 9562) and the clock helper."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

_RANDOM = bytearray()


def _random80() -> int:
    """80 random bits from the OS, drawn 4 KiB at a time (one getrandom call per ~400 ids, not per id)."""
    global _RANDOM
    if len(_RANDOM) < 10:
        _RANDOM = bytearray(os.urandom(4000))
    chunk = _RANDOM[-10:]
    del _RANDOM[-10:]
    return int.from_bytes(chunk, "big")


def _forget_random() -> None:
    _RANDOM.clear()  # a forked child must never reuse its parent's bytes


os.register_at_fork(after_in_child=_forget_random)


def uuid7() -> uuid.UUID:
    """Return a UUIDv7: 48 bits of Unix milliseconds, then random bits."""
    ms = time.time_ns() // 1_000_000
    rand = _random80()
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    return uuid.UUID(int=value)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC; handlers pass it into the pure domain."""
    return datetime.now(UTC)
