"""Run the escalation service: python -m services.escalation"""

import asyncio

from services.escalation.app import build

if __name__ == "__main__":
    asyncio.run(build().run())
