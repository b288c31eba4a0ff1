"""Gateway's composition root: the FastAPI app served by uvicorn."""

from __future__ import annotations

import socket

import uvicorn

from services.gateway.api import create_app
from services.gateway.settings import GatewaySettings
from shared import telemetry


def main(settings: GatewaySettings | None = None) -> None:
    settings = settings or GatewaySettings()
    telemetry.configure_logging("gateway", settings.log_json)
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=5)
    if not settings.reuse_port:
        uvicorn.Server(config).run()
        return
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.host, settings.port))
    uvicorn.Server(config).run(sockets=[sock])
