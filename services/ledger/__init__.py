"""Ledger: read models projected from every event — the timeline, the open whistles, dead letters."""
