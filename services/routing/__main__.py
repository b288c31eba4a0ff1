"""Run the routing service: python -m services.routing"""

from services.routing.app import build
from shared.runtime import main

if __name__ == "__main__":
    main(build)
