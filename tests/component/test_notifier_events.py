"""The notifier's consumer takes only the whistle and summons events it acts on (services/notifier/app.py,
`event_routes`): every other event of those two families, handed to its handler anyway, changes none of the
notifier's tables, so nothing is lost by not fetching it; and every one it takes does change them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import asyncpg
import pytest

from services.notifier import app as notifier_app
from services.notifier import store
from services.notifier.domain import COMMUNITY_DESK, STREET_COMMAND
from services.notifier.handlers import NotifierHandlers
from shared import contracts
from shared.contacts import ContactRule
from shared.contracts import (
    Event,
    ExtensionGranted,
    ExtensionRefused,
    ExtensionRequested,
    Location,
    Reporter,
    ResponderKind,
    Source,
    SummonsIssued,
    SummonsReported,
    SummonsReturned,
    SummonsTransferred,
    Tier,
    WhistleBlown,
    WhistleClosed,
    WhistleReopened,
    WhistleReporterErased,
    WhistleVerified,
)
from shared.db import SHARED_MIGRATIONS, create_pool, ensure_schema, migrate
from shared.ids import uuid7
from shared.runtime.routes import subject_matches

pytestmark = pytest.mark.asyncio

MIGRATIONS = Path(notifier_app.__file__).with_name("migrations")
NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 10:00 in Beijing: no quiet hours hold anything
RESPONDER = "s-urban"


def families() -> dict[str, type[Event]]:
    """Every whistle and summons event type, by subject."""
    found, todo = {}, [Event]
    while todo:
        kind = todo.pop()
        todo += kind.__subclasses__()
        if kind.SUBJECT.startswith(("whistle.", "summons.")) and kind.__module__ == contracts.__name__:
            found[kind.SUBJECT] = kind
    return found


TAKEN = set(NotifierHandlers.WHISTLE_EVENTS + NotifierHandlers.SUMMONS_EVENTS)
SKIPPED = sorted(set(families()) - TAKEN)


@pytest.fixture
async def pool(infra):
    await ensure_schema(infra["database_url"], "notifier_events")
    p = await create_pool(infra["database_url"], "notifier_events", max_size=4)
    await migrate(p, [SHARED_MIGRATIONS, MIGRATIONS])
    async with p.acquire() as conn:
        await conn.execute("TRUNCATE notifications, contact_rules, whistles, summons CASCADE")
        rule = ContactRule.model_validate({"steps": [  # the second step waits: a report cancels it
            {"channel": "email", "address": "duty@example.org"},
            {"channel": "email", "address": "chief@example.org", "delay_s": 3600}]})
        for recipient in (RESPONDER, COMMUNITY_DESK, STREET_COMMAND):
            await store.put_rule(conn, recipient, rule, "supervisor:test", NOW)
    yield p
    await p.close()


async def snapshot(conn: asyncpg.Connection) -> dict[str, str]:
    """Every table of the notifier's schema, as one digest each."""
    tables = [r["tablename"] for r in await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")]
    return {t: await conn.fetchval(f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x")
            for t in tables}


class Story:
    """A whistle with a contactable reporter and its summons, issued: what every later event finds."""

    def __init__(self) -> None:
        self.whistle_id, self.summons_id = uuid7(), uuid7()
        base = {"occurred_at": NOW, "whistle_id": self.whistle_id, "actor": "responder:s-urban"}
        self.base, self.summons = base, {**base, "summons_id": self.summons_id, "responder_id": RESPONDER}
        self.blown = self._blown(self.whistle_id)
        self.issued = SummonsIssued(**{**self.summons, "actor": "system:routing"}, responder_kind=ResponderKind.section,
                                    responder_name="城管科", category="roof_leak", tier=Tier.routine)

    def _blown(self, whistle_id: UUID) -> WhistleBlown:
        return WhistleBlown(occurred_at=NOW, whistle_id=whistle_id, actor="dispatcher:desk", category="roof_leak",
                            description="leak", location=Location(building="7"), tier=Tier.routine,
                            source=Source.hotline_12345, reporter=Reporter(phone="138****5678", sms_consent=True))

    def taken(self, subject: str) -> Event:
        """A valid event of a type the notifier takes."""
        later = NOW + timedelta(hours=1)
        made = {
            WhistleBlown: lambda: self._blown(uuid7()),  # another whistle
            WhistleVerified: lambda: WhistleVerified(**self.base),
            WhistleClosed: lambda: WhistleClosed(**self.base),
            WhistleReopened: lambda: WhistleReopened(**self.base, lead_responder_id=RESPONDER, reason="again"),
            WhistleReporterErased: lambda: WhistleReporterErased(**self.base, reason="asked"),
            SummonsIssued: lambda: self.issued.model_copy(update={"event_id": uuid7(), "summons_id": uuid7()}),
            SummonsReported: lambda: SummonsReported(**self.summons),
            SummonsReturned: lambda: SummonsReturned(**self.summons, reason_code="wrong_area"),
            SummonsTransferred: lambda: SummonsTransferred(**self.summons, to_responder_id="d-enforcement", reason="x"),
            ExtensionRequested: lambda: ExtensionRequested(**self.summons, new_deadline=later, reason="paint"),
            ExtensionGranted: lambda: ExtensionGranted(**self.summons, new_deadline=later),
            ExtensionRefused: lambda: ExtensionRefused(**self.summons),
        }
        return made[families()[subject]]()

    def skipped(self, subject: str) -> Event:
        """An event of a type the notifier does not take, with whatever a handler could read of it (it is
        not validated: its own fields are never read)."""
        kind = families()[subject]
        fields = self.summons if subject.startswith("summons.") else self.base
        return kind.model_construct(event_id=uuid7(), correlation_id=self.whistle_id, **fields)


async def handled(pool: asyncpg.Pool, story: Story, event: Event) -> tuple[dict, dict]:
    """The notifier's tables before and after `event`, handled by the handler of its family, after the story's
    whistle and summons."""
    handlers = NotifierHandlers(None, [], 1.0)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await handlers.on_whistles(conn, [story.blown], NOW)
            await handlers.on_summons(conn, [story.issued], NOW)
        before = await snapshot(conn)
        async with conn.transaction():
            handle = handlers.on_summons if event.SUBJECT.startswith("summons.") else handlers.on_whistles
            await handle(conn, [event], NOW)
        return before, await snapshot(conn)


async def test_the_consumer_takes_exactly_the_whistle_and_summons_events_its_handlers_act_on() -> None:
    subjects = notifier_app.event_routes(NotifierHandlers(None, [], 1.0)).subjects
    families_taken = {s for s in families() if any(subject_matches(f, s) for f in subjects)}
    assert families_taken == TAKEN
    assert {"whistle.grouped", "whistle.routed", "summons.on_site", "summons.resolved"} <= set(SKIPPED)


@pytest.mark.parametrize("subject", SKIPPED)
async def test_an_event_the_notifier_does_not_take_would_change_nothing_of_its_own(pool, subject: str) -> None:
    story = Story()
    before, after = await handled(pool, story, story.skipped(subject))
    assert after == before


@pytest.mark.parametrize("subject", sorted(TAKEN))
async def test_every_event_the_notifier_takes_changes_what_it_keeps(pool, subject: str) -> None:
    story = Story()
    before, after = await handled(pool, story, story.taken(subject))
    assert after != before
