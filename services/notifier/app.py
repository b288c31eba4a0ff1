"""Notifier's composition root."""

from __future__ import annotations

from pathlib import Path

from services.notifier import store
from services.notifier.channels.mail import EmailChannel
from services.notifier.channels.robots import DingTalkChannel, WeComChannel
from services.notifier.channels.sms import SmsChannel, TemplateSmsGateway
from services.notifier.channels.web import session
from services.notifier.channels.webhook import WebhookChannel
from services.notifier.handlers import NotifierHandlers
from services.notifier.payloads import ContactsPut, ContactsRef, NotificationList, UrgeAsk
from services.notifier.recipients import asking
from services.notifier.sender import (
    Handoff,
    Sender,
    category_names,
    count_pending,
    lease_seconds,
)
from services.notifier.settings import NotifierSettings
from services.notifier.signin import SigninLinkHandlers, SigninLinkSend
from shared import subjects
from shared.contracts import NotificationFailed, NotificationSent, Role, SummonsIssued
from shared.ids import utcnow
from shared.runtime import Consumer, EventRoutes, Request, ServiceRuntime

STAFF: frozenset[Role] = frozenset({"dispatcher", "supervisor"})
SUPERVISORS: frozenset[Role] = frozenset({"supervisor"})


class NotifierRuntime(ServiceRuntime):
    """The shared runtime plus the sender, started once the pool and relay are up and stopped first
    (the attempts out are finished and recorded)."""

    def __init__(self, settings: NotifierSettings):
        super().__init__("notifier", settings, Path(__file__).with_name("migrations"))
        self.sender: Sender | None = None
        # what the consumers write due now goes to this process's sender in memory, never more than it
        # can start soon (each held row is leased, and a held row at a kill -9 waits out its lease)
        self.handoff = Handoff(settings.handoff_most, lease_seconds(settings.timeout_s), settings.timeout_s)
        self.on_startup(self._start_sender)

    async def _start_sender(self, _: ServiceRuntime) -> None:
        s: NotifierSettings = self.settings  # type: ignore[assignment]
        self.http = session(s.send_concurrency, s.timeout_s)
        channels = {
            "webhook": WebhookChannel(self.http, s.webhook_allowed_hosts),
            "wecom": WeComChannel(self.http, s.wecom_base_url),
            "dingtalk": DingTalkChannel(self.http, s.dingtalk_base_url),
            "email": EmailChannel(s.smtp_host, s.smtp_port, s.mail_from, timeout_s=s.timeout_s, use_tls=s.smtp_tls,
                                  start_tls=s.smtp_starttls, username=s.smtp_username,
                                  password=s.smtp_password.get_secret_value() if s.smtp_password else None),
            "sms": SmsChannel(TemplateSmsGateway(self.http, s.sms_base_url, s.sms_api_key.get_secret_value(),
                                                 s.sms_sign_name), s.sms_templates, s.sms_default_template),
        }
        self.sender = Sender(
            self, channels, link_secret=s.link_secret.get_secret_value(), ack_link_default_s=s.ack_link_default_s,
            names=category_names(s.catalogue_file), public_base_url=s.public_base_url,
            concurrency=s.send_concurrency, claim_batch=s.claim_batch, poll_s=s.poll_s, timeout_s=s.timeout_s,
            max_attempts=s.max_attempts, backoff=s.backoff, handoff=self.handoff)
        await self.sender.start(self)

    async def stop(self) -> None:
        if self.sender is not None:
            await self.sender.stop()
            await self.http.close()
        await super().stop()


def event_routes(handlers: NotifierHandlers) -> EventRoutes:
    """What the notifier's one consumer takes (one consumer, so a whistle's events come in order: a summons'
    report after its issue; no inbox: every row has a deterministic id, ON CONFLICT DO NOTHING, and a stop is
    idempotent). Of the whistle and summons events only those it acts on: the others (grouped, routed, on
    site, resolved, …) were two of every new whistle's five deliveries here, each fetched, parsed, fenced
    and acked to be skipped (tests/component/test_notifier_events.py: skipping them changes nothing)."""
    return (EventRoutes().batch(NotifierHandlers.WHISTLE_EVENTS, handlers.on_whistles)
            .batch(NotifierHandlers.SUMMONS_EVENTS, handlers.on_summons)
            .batch("sla.>", handlers.on_sla).batch("escalation.>", handlers.on_escalations))


def build(settings: NotifierSettings | None = None) -> ServiceRuntime:
    settings = settings or NotifierSettings()
    runtime = NotifierRuntime(settings)
    runtime.signs = True  # asks routing, intake and response as the system: signed
    handlers = NotifierHandlers(settings.default_rule, settings.webhook_allowed_hosts, settings.poll_s, runtime.handoff,
                                ask=asking(runtime))
    events = event_routes(handlers)
    # a burst of new summons: one batch's statement and commit overlap the next one's parsing and planning
    # a message reaches its reader seconds later anyway: a batch gathers for a tenth of a second (Consumer.linger_s)
    runtime.consume(Consumer(events.subjects, events, batch=True, dedup=lambda _: None, durable="notifier-events",
                             overlaps=lambda e: isinstance(e, SummonsIssued), concurrency=settings.issued_in_flight,
                             linger_s=0.1))
    links = SigninLinkHandlers(settings.default_rule, settings.poll_s)
    runtime.serve(
        # a responder its own rule only (the handler checks)
        Request(subjects.CMD_NOTIFIER_CONTACTS_PUT, handlers.put_contacts, ContactsPut, SUPERVISORS | {"responder"}),
        Request(subjects.QRY_NOTIFIER_CONTACTS, handlers.get_contacts, ContactsRef, STAFF | {"responder"}, query=True),
        Request(subjects.CMD_NOTIFIER_URGE, handlers.urge, UrgeAsk, STAFF),
        Request(subjects.CMD_NOTIFIER_SIGNIN_LINK, links.send, SigninLinkSend, frozenset({"system"})),  # routing
        Request(subjects.QRY_NOTIFIER_NOTIFICATIONS, handlers.list_notifications, NotificationList, STAFF,
                query=True),
    )
    runtime.every(15.0, count_pending)

    async def purge(rt: ServiceRuntime) -> None:
        purged = await store.purge_reporters(rt.pool, settings.reporter_retention_days, utcnow())
        if purged:
            rt.log.info("reporters.purged", whistles=purged, retention_days=settings.reporter_retention_days)

    runtime.every(settings.reporter_purge_every_s, purge)
    runtime.documents(NotificationSent, NotificationFailed)
    return runtime
