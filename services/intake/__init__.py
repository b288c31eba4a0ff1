"""Intake: whistles as raised, and the service catalogue."""
