"""Notifier's handlers: events become notification rows (in the consumer's transaction); contact rules
and the delivery log answer the gateway."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg

from services.notifier import domain, recipients, signin, store
from services.notifier.domain import COMMUNITY_DESK, STREET_COMMAND, Planned
from services.notifier.payloads import ContactsPut, ContactsRef, NotificationList, UrgeAsk
from services.notifier.sender import Handoff
from shared import paging, privacy
from shared.contacts import ContactRule
from shared.contracts import (
    Command,
    EscalationRaised,
    Event,
    ExtensionGranted,
    ExtensionRefused,
    ExtensionRequested,
    Reply,
    SlaBreached,
    SlaRescheduled,
    SlaStarted,
    SlaWarned,
    SummonsIssued,
    SummonsReported,
    SummonsReturned,
    SummonsTransferred,
    WhistleBlown,
    WhistleClosed,
    WhistleReopened,
    WhistleReporterErased,
    WhistleVerified,
)

Row = tuple[Planned, dict[str, Any]]


def new_webhook_secret() -> str:
    """A Standard Webhooks secret for a subscriber who gave none (shown once, in the PUT's answer)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def hide(rule: dict) -> dict:
    """A rule as reads show it: secrets never, a robot key in part."""
    steps = [{**s, "secret": "whsec_…" if (s.get("secret") or "").startswith("whsec_") else ("SEC…" if s.get("secret")
              else None), "address": domain.mask("robot", s["address"]) if s.get("channel") in ("wecom", "dingtalk")
              else s.get("address")} for s in rule["steps"]]
    return {**rule, "steps": steps}


class NotifierHandlers:
    # the whistle and summons events `on_whistles` and `on_summons` act on, the only ones its consumer takes
    # (an arrival, a resolution, a pause or a resume changes none of its messages)
    WHISTLE_EVENTS = tuple(t.SUBJECT for t in (WhistleBlown, WhistleVerified, WhistleClosed, WhistleReopened,
                                               WhistleReporterErased))
    SUMMONS_EVENTS = tuple(t.SUBJECT for t in (SummonsIssued, SummonsReported, SummonsReturned, SummonsTransferred,
                                               ExtensionRequested, ExtensionGranted, ExtensionRefused))

    def __init__(self, default_rule: ContactRule | None, allowed_hosts: list[str], wake_within_s: float,
                 handoff: Handoff | None = None, ask: recipients.Ask | None = None):
        self.default = default_rule
        self.allowed = {h.lower() for h in allowed_hosts}
        self.wake_within_s = wake_within_s
        self.handoff = handoff
        self.ask = ask

    # --- events ---------------------------------------------------------------------------------

    def _rows(self, e: Event, kind: str, recipient: str, tier: str | None, rules: dict[str, ContactRule],
              details: dict[str, Any], summons_id: UUID | None, *, superior: str | None = None,
              stops_on_report: bool = False) -> list[Row]:
        planned = domain.plan(kind, e.event_id, recipient, e.occurred_at, tier or "", rules, self.default,
                              superior=superior, stops_on_report=stops_on_report)
        return [(p, {"cause_id": e.event_id, "kind": kind, "whistle_id": e.whistle_id, "summons_id": summons_id,
                     "details": details, "tier": tier,
                     "locale": (rules.get(p.recipient_id) or self.default).locale}) for p in planned]

    async def _write(self, conn: asyncpg.Connection, rows: list[Row], now: datetime, summons: list[tuple] = ()) -> None:
        """The rows (and summons); those due now are written claimed and handed to this process's sender,
        as far as it has room, which sends them as soon as this transaction commits."""
        due = [p.id for p, _ in rows if p.due_at <= now]
        token, room = self.handoff.reserve(len(due), now) if self.handoff and due else ("", 0)
        try:
            fresh = await store.add_notifications(conn, rows, now, self.wake_within_s, summons,
                                                  handed=frozenset(due[:room]),
                                                  lease_s=self.handoff.lease_s if room else 0.0, token=token)
        except BaseException:
            if token:
                self.handoff.cancel(token)
            raise
        if token:
            self.handoff.stash(token, fresh)

    async def on_whistles(self, conn: asyncpg.Connection, events: list[Event], now: datetime) -> list:
        """Remember each whistle as blown (what messages say); on verification, text the reporter the
        follow-up link if they gave a phone and agreed. Remember when it is struck off or reopened (its
        reporter's data is kept until WHISTLE_REPORTER_RETENTION_DAYS after), and forget the reporter at once
        when their data is erased on request."""
        await store.add_whistles(conn, [
            (e.whistle_id, e.category, e.tier.value, e.location.model_dump(mode="json"),
             bool(e.reporter and e.reporter.phone and e.reporter.sms_consent))
            for e in events if isinstance(e, WhistleBlown)])
        await privacy.record_whistle_times(conn, events)
        verified = [e for e in events if isinstance(e, WhistleVerified)]
        if verified:
            ok = await store.contactable(conn, [e.whistle_id for e in verified])
            await self._write(conn, [
                (domain.plan_resident(e.event_id, e.occurred_at, self.default),
                 {"cause_id": e.event_id, "kind": e.subject, "whistle_id": e.whistle_id, "summons_id": None,
                  "details": {}, "tier": None, "locale": "zh-CN"})
                for e in verified if e.whistle_id in ok], now)
        # last: a verification in the same batch must not text a reporter whose data is gone
        await store.remove_reporters(conn, [e.whistle_id for e in events if isinstance(e, WhistleReporterErased)], now)
        return []

    async def on_summons(self, conn: asyncpg.Connection, events: list[Event], now: datetime) -> list:
        """A new summons runs its responder's contact rule; a report, return or transfer stops what is left
        of it; returns and transfers tell the community desk, extension requests the street command
        centre, decisions the responder."""
        issued = [e for e in events if isinstance(e, SummonsIssued)]
        others = {e.summons_id for e in events if hasattr(e, "summons_id") and not isinstance(e, SummonsIssued)}
        facts = await store.summons_facts(conn, others) if others else {}
        wanted = {COMMUNITY_DESK, STREET_COMMAND}
        for e in events:
            wanted.add(getattr(e, "responder_id", "") or "")
            if isinstance(e, SummonsIssued):
                wanted.add(e.superior_id or STREET_COMMAND)
        rules = await store.rules(conn, wanted)
        tiers = {e.summons_id: e.tier.value for e in issued}  # a summons issued in this very batch
        rows: list[Row] = []
        for e in events:
            fact = facts.get(getattr(e, "summons_id", None))
            tier = fact["tier"] if fact else tiers.get(getattr(e, "summons_id", None))
            if isinstance(e, SummonsIssued):
                rows += self._rows(e, e.subject, e.responder_id, e.tier.value, rules, {"role": e.role}, e.summons_id,
                                   superior=e.superior_id or STREET_COMMAND)
            elif isinstance(e, SummonsReturned):
                rows += self._rows(e, e.subject, COMMUNITY_DESK, tier, rules, {
                    "responder_id": e.responder_id, "reason_code": e.reason_code, "reason": e.reason}, e.summons_id)
            elif isinstance(e, SummonsTransferred):
                rows += self._rows(e, e.subject, COMMUNITY_DESK, tier, rules, {
                    "responder_id": e.responder_id, "to_responder_id": e.to_responder_id, "reason": e.reason},
                    e.summons_id)
            elif isinstance(e, ExtensionRequested):
                rows += self._rows(e, e.subject, STREET_COMMAND, tier, rules, {
                    "responder_id": e.responder_id, "clock": e.clock, "new_deadline": e.new_deadline.isoformat(),
                    "reason": e.reason}, e.summons_id)
            elif isinstance(e, (ExtensionGranted, ExtensionRefused)):
                rows += self._rows(e, e.subject, e.responder_id, tier, rules, {
                    "clock": e.clock, "new_deadline": getattr(e, "new_deadline", None)}, e.summons_id)
        await self._write(conn, rows, now, [(e.summons_id, e.whistle_id, e.responder_id, e.responder_name,
                                             e.superior_id, e.category, e.tier.value) for e in issued])
        # after the rows: a summons issued and reported in the same batch has its steps cancelled too
        await store.stop(conn, [e.summons_id for e in events
                                if isinstance(e, (SummonsReported, SummonsReturned, SummonsTransferred))], now)
        return []

    async def on_sla(self, conn: asyncpg.Connection, events: list[Event], now: datetime) -> list:
        """Deadlines (for the messages); a warning or a breach tells the responder, unless a report clock's
        summons was reported meanwhile."""
        await store.set_deadlines(conn, [
            (e.summons_id, clock, at) for e in events
            for clock, at in (e.deadlines.items() if isinstance(e, SlaStarted)
                              else [(e.clock, e.deadline)] if isinstance(e, SlaRescheduled) and e.deadline else [])])
        alerts = [e for e in events if isinstance(e, (SlaWarned, SlaBreached))]
        await self._alert(conn, [(e, e.responder_id, {"clock": e.clock, "deadline": e.deadline.isoformat()})
                                 for e in alerts], now)
        return []

    async def on_escalations(self, conn: asyncpg.Connection, events: list[Event], now: datetime) -> list:
        """One step of the ladder (三呼三应) reaches its target: the responder, its superior, the street
        command centre or the district."""
        raised = [e for e in events if isinstance(e, EscalationRaised)]
        await self._alert(conn, [(e, e.target_id, {"clock": e.clock, "level": e.level, "step": e.step,
                                                   "round": e.round}) for e in raised], now)
        return []

    async def _alert(self, conn: asyncpg.Connection, alerts: list[tuple[Any, str, dict]], now: datetime) -> None:
        if not alerts:
            return
        facts = await store.summons_facts(conn, {e.summons_id for e, _, _ in alerts})
        rules = await store.rules(conn, {recipient for _, recipient, _ in alerts})
        rows: list[Row] = []
        for e, recipient, details in alerts:
            fact = facts.get(e.summons_id)
            if fact and fact["stopped"] and e.clock == "report":
                continue  # reported (or handed on) since: nobody needs chasing
            details = {**details, "responder_id": fact["responder_id"] if fact else None}
            rows += self._rows(e, e.subject, recipient, fact["tier"] if fact else None, rules, details, e.summons_id,
                               stops_on_report=e.clock == "report")
        await self._write(conn, rows, now)

    # --- requests -------------------------------------------------------------------------------

    async def urge(self, conn: asyncpg.Connection, cmd: Command[UrgeAsk], now: datetime):
        """催办: remind each listed summons' responder on its first step (dispatchers, supervisors); summons
        already reported, returned or transferred are skipped."""
        ids = cmd.payload.summons_ids
        facts = await store.summons_facts(conn, ids)
        live = [f for f in facts.values() if f["responder_id"] and f["whistle_id"] and not f["stopped"]]
        rules = await store.rules(conn, {f["responder_id"] for f in live})
        rows: list[Row] = []
        for f in live:
            cause = domain.notification_id(cmd.request_id, f["responder_id"], str(f["id"]))  # one per summons
            for p in domain.plan("summons.urged", cause, f["responder_id"], now, "urgent", rules, self.default):
                rows.append((p, {"cause_id": cause, "kind": "summons.urged", "whistle_id": f["whistle_id"],
                                 "summons_id": f["id"], "details": {"by": str(cmd.actor)}, "tier": f["tier"],
                                 "locale": (rules.get(p.recipient_id) or self.default).locale}))
        await self._write(conn, rows, now)
        return Reply.success({"urged": len({m["summons_id"] for _, m in rows}),
                              "skipped": sorted(str(i) for i in set(ids) - {m["summons_id"] for _, m in rows})}), []

    async def put_contacts(self, conn: asyncpg.Connection, cmd: Command[ContactsPut], now: datetime):
        """Create or replace a responder's contact rule (supervisors, or the responder itself)."""
        recipient, rule = cmd.payload.id, cmd.payload.rule
        if cmd.actor.role == "responder" and cmd.actor.id != recipient:
            return Reply.refuse(403, "forbidden", "supervisors, or the responder itself / 仅限督办或本人"), []
        if (unknown := await recipients.unknown(self.ask, recipient)) is not None:
            return unknown, []
        for i, step in enumerate(rule.steps):
            if step.channel == "webhook" and (urlsplit(step.address).hostname or "").lower() not in self.allowed:
                return Reply.refuse(422, "host_not_allowed", "this host is not on the webhook allow-list"
                                    " (NOTIFIER_WEBHOOK_ALLOWED_HOSTS) / 该主机不在白名单内", f"steps.{i}.address"), []
        steps = [s.model_copy(update={"secret": new_webhook_secret()}) if s.channel == "webhook" and not s.secret
                 else s for s in rule.steps]
        rule = rule.model_copy(update={"steps": steps})
        created = await store.put_rule(conn, recipient, rule, str(cmd.actor), now)
        # the only time a secret is shown: the subscriber needs it to check signatures
        return Reply.success({"id": recipient, "rule": rule.model_dump(mode="json"), "created": created}), []

    async def get_contacts(self, pool: asyncpg.Pool, cmd: Command[ContactsRef]) -> Reply:
        """A responder's contact rule, or the community default it falls back on (secrets hidden; dispatchers,
        supervisors, or the responder itself)."""
        recipient = cmd.payload.id
        if cmd.actor.role == "responder" and cmd.actor.id != recipient:
            return Reply.refuse(403, "forbidden", "dispatchers, supervisors, or the responder itself"
                                " / 仅限调度员、督办或本人")
        row = await store.rule_row(pool, recipient)
        if row is None:
            default = self.default.model_dump(mode="json") if self.default else None
            return Reply.success({"id": recipient, "source": "default", "rule": hide(default) if default else None})
        return Reply.success({"id": recipient, "source": "own", "rule": hide(row["rule"]),
                              "updated_by": row["updated_by"], "updated_at": row["updated_at"].isoformat()})

    async def list_notifications(self, pool: asyncpg.Pool, cmd: Command[NotificationList]) -> Reply:
        """Notifications, newest first, with every attempt: by whistle, recipient and state (dispatchers,
        supervisors)."""
        p = cmd.payload
        asked = paging.window(p.page, 100, paging.aware, paging.uuid)
        if isinstance(asked, Reply):
            return asked
        limit, after = asked
        rows = await store.list_notifications(pool, p.whistle_id, p.responder_id, p.state, limit + 1, after)
        return Reply.success(paging.page([_shown(r) for r in rows], limit,
                                         lambda r: (r["created_at"], r["id"])))


def _shown(r: asyncpg.Record) -> dict:
    iso = lambda v: v.isoformat() if v is not None else None  # noqa: E731
    return {
        "id": str(r["id"]), "kind": r["kind"], "whistle_id": str(r["whistle_id"]) if r["whistle_id"] else None,
        "summons_id": str(r["summons_id"]) if r["summons_id"] else None, "recipient_id": r["recipient_id"],
        "step": r["step"], "channel": r["channel"], "address": domain.mask(r["channel"], r["target"].get("address")),
        # a sign-in link never shows whole, should a channel's answer have echoed it
        "state": r["state"], "attempts": [{**a, "answer": signin.scrub(a.get("answer"))} for a in r["attempt_log"]],
        "answer": signin.scrub(r["answer"]), "due_at": iso(r["due_at"]),
        "created_at": iso(r["created_at"]), "updated_at": iso(r["updated_at"]), "finished_at": iso(r["finished_at"]),
    }
