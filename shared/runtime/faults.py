"""Which faults are worth a retry and which messages never will be handled."""

from __future__ import annotations

import asyncio

import asyncpg
import nats.errors

# Faults worth a retry: the database or the network, not our code or the message. Postgres's
# shutdown and admin errors (57P01 admin_shutdown and the rest of class 57, operator intervention)
# come when it restarts; class 53 (out of disk, memory, connections) passes too.
TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.TimeoutError,
)
RETRY_FIRST_S, RETRY_MOST_S = 0.5, 5.0  # backoff of in-place retries (a transient fault, a failing message)
STALL_S = 10.0  # a dependency down longer than this is logged and alerted on


class Poison(ValueError):
    """A message that can never be handled (malformed, unknown subject)."""


def backoff(attempt: int) -> float:
    return min(RETRY_FIRST_S * 2 ** max(attempt - 1, 0), RETRY_MOST_S)

