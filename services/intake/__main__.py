"""Run the intake service: python -m services.intake"""

import asyncio

from services.intake.app import build

if __name__ == "__main__":
    asyncio.run(build().run())
