"""Run the routing service: python -m services.routing"""

import asyncio

from services.routing.app import build

if __name__ == "__main__":
    asyncio.run(build().run())
