"""Run the response service: python -m services.response"""

from services.response.app import build
from shared.runtime import main

if __name__ == "__main__":
    main(build)
