"""Run the response service: python -m services.response"""

import asyncio

from services.response.app import build

if __name__ == "__main__":
    asyncio.run(build().run())
