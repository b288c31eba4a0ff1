"""A service's collector settings once started: start-up's objects frozen, the young generation larger."""

from __future__ import annotations

import gc

from shared import heap


def test_settle_freezes_what_start_up_made_and_collects_the_young_less_often() -> None:
    threshold = gc.get_threshold()
    try:
        heap.settle()
        assert gc.get_freeze_count() > 1000  # this interpreter's modules at least
        assert gc.get_threshold() == (10_000, threshold[1], threshold[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
