"""Run the escalation service: python -m services.escalation"""

from services.escalation.app import build
from shared.runtime import main

if __name__ == "__main__":
    main(build)
