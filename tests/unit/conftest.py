"""Unit tier: pure code only. Hypothesis keeps no example database and caches inside tests/unit."""

from pathlib import Path

from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(Path(__file__).with_name(".hypothesis"))  # ignored by git, like the root one
settings.register_profile("unit", database=None, deadline=None)
settings.load_profile("unit")
