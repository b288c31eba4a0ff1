"""Escalation's settings (env prefix ESCALATION_)."""

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.escalation.policy import DEFAULT_POLICIES
from shared.settings import ServiceSettings


class EscalationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ESCALATION_", extra="ignore")
    policy_file: Path = DEFAULT_POLICIES
    # left at full priority: measured here, escalation at 5 let the intake bench's p99 at 500/s drop
    # further (88 -> 47/68 ms) but made clock firings later (timers bench p99 1.3-1.5 -> 1.8-2.2 s)
    nice: int = Field(default=0, ge=0, le=19, description="CPU priority; clocks fire on time first")
    # 2 s: a burst of firings (deadlines bunch at office opening under working time) is read and
    # worked out before it falls due; measured here, 10,000 clocks due within one second: p99
    # lateness 0.17 s at 2,000 ms, 0.46-1.13 s at 500 ms (timers bench)
    timer_lead_ms: float = Field(
        default=2000, ge=0, le=4000,
        description="How far ahead of a clock's time JetStream fires its schedule; escalation works the firing"
        " out at once and saves it at the time (the server's scheduler wakes at most every 250 ms). Below hold_max_s.",
    )

    # measured here (timers bench, 100,000 clocks): one at a time 4,726-4,819/s; 2 in flight
    # 5,777-6,762/s; 3 in flight 6,712-6,735/s (runs vary by about 10%)
    issued_in_flight: int = Field(
        default=3, ge=1, le=8,
        description="Batches of new summons handled at once (each starts its summons' clocks; nothing earlier"
        " can touch them); a batch with any other summons event waits until those before it are done.",
    )

    # each run reads every running clock's (id, generation, time) and every schedule in CLOCKS
    reconcile_every_s: float = Field(
        default=60, gt=0,
        description="How often running clocks are checked against their schedules in NATS (a missing or stale"
        " one is armed again); a run taking long waits nine times its length before the next.",
    )
    # longer: fewer firings doubled when handling is slow; shorter: a lost firing is armed again sooner
    reconcile_grace_s: float = Field(
        default=30, ge=0,
        description="A missing schedule whose time passed less than this ago is left alone: its firing is on its way.",
    )

    @property
    def timer_lead(self) -> timedelta:
        return timedelta(milliseconds=self.timer_lead_ms)
