"""Escalation: SLA policies, clocks on JetStream schedules, and the 三呼三应 ladder."""
