"""Run the notifier service: python -m services.notifier"""

from services.notifier.app import build
from shared.runtime import main

if __name__ == "__main__":
    main(build)
