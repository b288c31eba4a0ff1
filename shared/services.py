"""Every process of the system in one place: its name, how it is built, and whether it has a private
telemetry port. The runner, `whistle docs`, the gateway's health check, the benchmarks and the tests
read it; `docker-compose.yml` and `deploy/prometheus.yml` are checked against it (tests/unit)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Service:
    name: str
    background: bool = True  # behind the gateway: a schema, consumers, a private /metrics and /healthz port

    @property
    def build(self) -> Callable[[], Any]:
        """The composition root (`services.<name>.app.build`), imported when asked for."""
        return importlib.import_module(f"services.{self.name}.app").build


SERVICES = (Service("intake"), Service("routing"), Service("response"), Service("escalation"), Service("ledger"),
            Service("notifier"), Service("gateway", background=False))
NAMES = tuple(s.name for s in SERVICES)  # every process `whistle up` starts, in order
BACKGROUND = tuple(s.name for s in SERVICES if s.background)  # each with its schema and telemetry port
