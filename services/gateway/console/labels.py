"""Labels for codes the services send (states, tiers, event types…), marked for the catalogue."""

from __future__ import annotations

from services.gateway.console.i18n import N_
from shared.contracts import SummonsMove

TIERS = {"routine": N_("Routine"), "urgent": N_("Urgent"), "complex": N_("Complex")}
SUMMONS_STATES = {
    "issued": N_("Summoned"), "reported": N_("Reported"), "on_site": N_("On site"), "resolved": N_("Resolved"),
    "returned": N_("Returned"), "transferred": N_("Transferred"),
}
BOARD_STATES = {**{k: SUMMONS_STATES[k] for k in ("issued", "reported", "on_site")},
                "warned": N_("Warned"), "breached": N_("Breached"), "paused": N_("Paused")}
WHISTLE_STATUSES = {
    "open": N_("Open"), "dispatched": N_("Dispatched"), "resolved": N_("Resolved"), "verified": N_("Verified"),
    "closed": N_("Closed"), "unroutable": N_("Unroutable"), "awaiting_arbitration": N_("Awaiting arbitration"),
    "reopened": N_("Reopened"),
}
CLOCKS = {"report": N_("Report"), "on_site": N_("On site"), "resolve": N_("Resolve")}
ROLES = {"lead": N_("Lead"), "co_handler": N_("Co-handler"), "dispatcher": N_("Dispatcher"),
         "supervisor": N_("Supervisor"), "responder": N_("Responder")}
SOURCES = {"hotline_12345": N_("12345 hotline"), "grid_patrol": N_("Grid patrol"), "proactive": N_("Proactive"),
           "service_point": N_("Service point"), "online": N_("Online"), "community": N_("Community")}
SATISFACTION = {"satisfied": N_("Satisfied"), "basically_satisfied": N_("Basically satisfied"),
                "dissatisfied": N_("Dissatisfied")}
EVENTS = {
    "whistle.blown": N_("Whistle blown"), "whistle.grouped": N_("Joined a problem class"),
    "whistle.routed": N_("Routed"), "whistle.unroutable": N_("Could not be routed"),
    "whistle.verified": N_("Verified and struck off"), "whistle.closed": N_("Closed"),
    "whistle.reopened": N_("Reopened"), "whistle.followed_up": N_("Followed up"),
    "whistle.arbitration_needed": N_("Awaiting arbitration"), "whistle.arbitrated": N_("Arbitrated"),
    "whistle.reporter_erased": N_("Reporter's data erased"),
    "summons.issued": N_("Summoned"), "summons.acknowledged": N_("Reported"), "summons.reported": N_("Reported"),
    "summons.on_site": N_("On site"), "summons.resolved": N_("Resolved"), "summons.returned": N_("Returned"),
    "summons.transferred": N_("Transferred"), "summons.paused": N_("Paused"), "summons.resumed": N_("Resumed"),
    "summons.extension_requested": N_("Extension requested"), "summons.extension_granted": N_("Extension granted"),
    "summons.extension_refused": N_("Extension refused"), "sla.warned": N_("Deadline warning"),
    "sla.breached": N_("Deadline breached"), "sla.started": N_("Clocks started"),
    "sla.rescheduled": N_("Deadline moved"),
    "escalation.raised": N_("Escalated"), "notification.sent": N_("Notification sent"),
    "notification.failed": N_("Notification failed"), "summons.urged": N_("Urged"),
}
NOTIFICATION_STATES = {"pending": N_("Pending"), "delivered": N_("Delivered"), "failed": N_("Failed"),
                       "cancelled": N_("Cancelled")}

# pydantic's error types, as a person should read them next to the field
FIELD_ERRORS = {
    "missing": N_("This field is required."),
    "string_too_short": N_("This field is required."),
    "string_too_long": N_("This is too long."),
    "literal_error": N_("Choose one of the options."),
    "enum": N_("Choose one of the options."),
    "bool_parsing": N_("Choose yes or no."),
    "bool_type": N_("Choose yes or no."),
    "extra_forbidden": N_("This field is not expected."),
    "string_pattern_mismatch": N_("This is not in the expected form."),
}
INVALID = N_("This value is not valid.")


def label(table: dict[str, str], code: str | None) -> str:
    """The catalogue message for a code, or the code itself (an id or code is shown as it is)."""
    return table.get(code or "", code or "")

LEVELS = {"responder": N_("Responder reminded"), "superior": N_("Superior summoned"),
          "street_command": N_("Street command centre"), "district": N_("District")}

RETURN_REASONS = {"wrong_area": N_("Not our area"), "unclear_ownership": N_("Unclear who owns it"),
                  "overlapping_duty": N_("Overlapping duties"), "not_our_duty": N_("Not our duty"),
                  "other": N_("Other (say why)")}
MOVES = {SummonsMove.report: N_("Report"), SummonsMove.arrive: N_("On site"), SummonsMove.resolve: N_("Resolve"),
         SummonsMove.pause: N_("Wait on the resident"), SummonsMove.resume: N_("Resume"),
         SummonsMove.return_: N_("Return"), SummonsMove.transfer: N_("Transfer"), "extension": N_("Ask for more time")}
