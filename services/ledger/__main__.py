"""Run the ledger service: python -m services.ledger"""

import asyncio

from services.ledger.app import build

if __name__ == "__main__":
    asyncio.run(build().run())
