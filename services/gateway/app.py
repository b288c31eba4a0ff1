"""Gateway's composition root: the FastAPI app served by uvicorn."""

from __future__ import annotations

import socket
import sys

import uvicorn
from pydantic import ValidationError

from services.gateway.api import create_app
from services.gateway.limits import NormalisedPaths
from services.gateway.settings import GatewaySettings
from shared import telemetry
from shared.auth import SecretError


def settings_or_exit() -> GatewaySettings:
    """The gateway's settings; a clear message and exit code 2 when one is refused (a missing or short
    secret above all: there is no default to fall back on). The message never repeats a value."""
    try:
        settings = GatewaySettings()
        settings.command_signer()  # it signs every command it forwards: no key, no gateway
        return settings
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        print(f"gateway refuses to start / 网关拒绝启动: {reasons}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except SecretError as exc:
        print(f"gateway refuses to start / 网关拒绝启动: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def main(settings: GatewaySettings | None = None) -> None:
    settings = settings or settings_or_exit()
    telemetry.configure_logging("gateway", settings.log_json)
    app = create_app(settings)
    app.add_middleware(NormalisedPaths)  # outermost: every route and the edge's checks see the normalised path
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=5)
    if not settings.reuse_port:
        uvicorn.Server(config).run()
        return
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.host, settings.port))
    uvicorn.Server(config).run(sockets=[sock])
