"""Gateway's composition root: the FastAPI app served by uvicorn."""

from __future__ import annotations

import uvicorn

from services.gateway.api import create_app
from services.gateway.settings import GatewaySettings
from shared import telemetry


def main(settings: GatewaySettings | None = None) -> None:
    settings = settings or GatewaySettings()
    telemetry.configure_logging("gateway", settings.log_json)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level="warning",
        access_log=False, timeout_graceful_shutdown=5,
    )
