"""Subject and stream names (one place; services import, never spell them)."""

from shared.services import BACKGROUND

EVENTS_STREAM = "EVENTS"
EVENT_FAMILIES = ("whistle", "summons", "sla", "escalation", "notification")
# published as <family>.<verb>.<whistle id>, stored with the whistle's partition before the id (a replay
# is published as stored); any other shape is a stray, which the ledger dead-letters (STRAY_EVENTS)
EVENTS_SUBJECTS = [f"{family}.>" for family in EVENT_FAMILIES]
STRAY_EVENTS = ("*.*", "*.*.*.*.>")  # no whistle in the subject, or more tokens than a stored event has

CLOCKS_STREAM = "CLOCKS"
CLOCK_TIMER = "clock.timer"  # + .<clock_id>: the schedule message (Nats-Schedule: @at …)
CLOCK_DUE = "clock.due"  # + .<clock_id>: what the server publishes when it fires

DEADLETTER_STREAM = "DEADLETTER"
DEADLETTER = "deadletter"  # + .<service>

ADVISORIES_STREAM = "ADVISORIES"
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"

# request/reply subjects (core NATS, queue groups by service)
HEALTH = "health"  # + .<service>
RELAY_FORWARD = "relay"  # + .<service>: outbox rows a replica committed, for the replica whose relay leads
CMD_INTAKE_BLOW = "cmd.intake.blow"
CMD_INTAKE_IMPORT = "cmd.intake.import"
QRY_INTAKE_CATEGORIES = "qry.intake.categories"
CMD_INTAKE_API_KEY_ISSUE = "cmd.intake.api_key_issue"
CMD_INTAKE_API_KEY_REVOKE = "cmd.intake.api_key_revoke"
QRY_INTAKE_API_KEY_CHECK = "qry.intake.api_key_check"
CMD_INTAKE_REPORTER_ERASE = "cmd.intake.reporter_erase"  # erase a reporter's personal data on request (supervisors)
QRY_INTAKE_CLASSES = "qry.intake.classes"  # problem classes (一个诉求解决一类问题)
CMD_RESPONSE_ACT = "cmd.response.act"  # report / arrive / resolve
CMD_RESPONSE_VERIFY = "cmd.response.verify"
CMD_RESPONSE_FOLLOW_UP = "cmd.response.follow_up"
QRY_RESPONSE_FOLLOW_UP_LINK = "qry.response.follow_up_link"
CMD_ROUTING_ARBITRATE = "cmd.routing.arbitrate"
QRY_ROUTING_RESPONDER = "qry.routing.responder"
QRY_ROUTING_RESPONDERS = "qry.routing.responders"
QRY_ROUTING_RESPONDER_ONE = "qry.routing.responder_one"
CMD_ROUTING_RESPONDER_PUT = "cmd.routing.responder_put"
CMD_RESPONSE_EXTENSION = "cmd.response.extension"
CMD_RESPONSE_EXTENSION_DECISION = "cmd.response.extension_decision"
QRY_RESPONSE_SUMMONS = "qry.response.summons"
QRY_ROUTING_EXPLAIN = "qry.routing.explain"
QRY_ROUTING_BUILDINGS = "qry.routing.buildings"  # the buildings with centres and footprints, for a map
QRY_ROUTING_GRIDS = "qry.routing.grids"
QRY_ROUTING_PLACE = "qry.routing.place"  # the building nearest a lat/long, within reach (Open311)
QRY_LEDGER_WHISTLE = "qry.ledger.whistle"
QRY_LEDGER_WHISTLES = "qry.ledger.whistles"
QRY_LEDGER_DEADLETTERS = "qry.ledger.deadletters"
QRY_LEDGER_DEADLETTER = "qry.ledger.deadletter"  # one dead letter, with its body and replays
CMD_LEDGER_DEADLETTER_REPLAY = "cmd.ledger.deadletter_replay"  # put it back on its subject (supervisors)
QRY_LEDGER_RATES = "qry.ledger.rates"
QRY_LEDGER_RANKING = "qry.ledger.ranking"
QRY_LEDGER_AUDIT = "qry.ledger.audit"  # who did what when, a month of the timeline a page at a time (supervisors)
QRY_LEDGER_OPEN311 = "qry.ledger.open311"  # whistles by ids / categories / dates / open-closed, for Open311
QRY_ESCALATION_POLICIES = "qry.escalation.policies"
CMD_NOTIFIER_CONTACTS_PUT = "cmd.notifier.contacts_put"  # a responder's contact rule (supervisor, or itself)
QRY_NOTIFIER_CONTACTS = "qry.notifier.contacts"
QRY_NOTIFIER_NOTIFICATIONS = "qry.notifier.notifications"  # what was sent, to whom, each attempt
QRY_INTAKE_REPORTER_CONTACT = "qry.intake.reporter_contact"  # the whole phone, for the notifier only (system)
QRY_RESPONSE_FOLLOW_UP_TOKEN = "qry.response.follow_up_token"  # the follow-up link to text (system)
CMD_ROUTING_PASSWORD_SET = "cmd.routing.password_set"  # console passwords (supervisors; the runner's demo ones)
CMD_ROUTING_SIGNIN_CHECK = "cmd.routing.signin_check"  # a console sign-in (system:console), slowed per user name
QRY_ROUTING_ACCOUNTS = "qry.routing.accounts"  # console accounts (supervisors); those acting as one id (system)
QRY_ROUTING_KNOWN = "qry.routing.known"  # is an id a registry responder, or whom an account acts as? (the notifier)
CMD_ROUTING_SIGNIN_LINK = "cmd.routing.signin_link"  # send me a one-time sign-in link (system:console), slowed per name
CMD_ROUTING_SIGNIN_LINK_USE = "cmd.routing.signin_link_use"  # spend a sign-in link once (system:console)
CMD_NOTIFIER_SIGNIN_LINK = "cmd.notifier.signin_link"  # send a sign-in link to an account's person (system:routing)
QRY_LEDGER_BOARD = "qry.ledger.board"  # open summons with their clocks, filtered, for the console's SLA board
QRY_LEDGER_INBOX = "qry.ledger.inbox"  # what waits on a supervisor: counts, or pending extensions
LEDGER_BOARD_CHANGED = "ledger.board.changed"  # core NATS, after each committed ledger batch: {"whistle_ids": [...]}
CMD_NOTIFIER_URGE = "cmd.notifier.urge"  # 催办: remind each listed summons' responder (dispatchers, supervisors)
# bearer token revocation (routing owns the list; every gateway keeps it in memory)
CMD_ROUTING_TOKEN_REVOKE = "cmd.routing.token_revoke"  # one token by its jti (supervisors, or its own holder)
CMD_ROUTING_RESPONDER_TOKENS_REVOKE = "cmd.routing.responder_tokens_revoke"  # all of a responder's (supervisors)
QRY_ROUTING_TOKEN_REVOCATIONS = "qry.routing.token_revocations"  # the whole list, for the gateways (system)
ROUTING_TOKENS_CHANGED = "routing.tokens.changed"  # core NATS, after each committed change: read the list again

SERVICES = BACKGROUND  # the services behind the gateway (shared/services.py)
