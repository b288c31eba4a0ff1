"""Run the intake service: python -m services.intake"""

from services.intake.app import build
from shared.runtime import main

if __name__ == "__main__":
    main(build)
