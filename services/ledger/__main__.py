"""Run the ledger service: python -m services.ledger"""

from services.ledger.app import build
from shared.runtime import main

if __name__ == "__main__":
    main(build)
