"""Run the intake service: python -m services.intake"""

import asyncio

from services.intake.app import build

try:  # measured: the blow path's NATS and Postgres round trips cost less CPU on uvloop
    import uvloop
except ImportError:  # pragma: no cover - platforms without uvloop
    uvloop = None

if __name__ == "__main__":
    (uvloop.run if uvloop else asyncio.run)(build().run())
