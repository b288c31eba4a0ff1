"""Sign-in links (发送登录链接): routing makes a one-time link for an account; the notifier sends it to
the account's person on the first step of their own contact rule (or the community default), at once.

The row is about no whistle, so its attempts queue no timeline event. The token rides in the row's
details until it is sent (it is spent once and lives 15 minutes); it is never logged, and reads
show the link cut short.
"""

from __future__ import annotations

import re
from datetime import datetime
from uuid import UUID

import asyncpg
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.notifier import domain, store
from shared.contacts import ContactRule
from shared.contracts import Command, Reply

KIND = "account.signin_link"
PATH = "/console/signin/link/"
_TOKEN_IN = re.compile(re.escape(PATH) + r"[A-Za-z0-9_-]+")


class SigninLinkSend(BaseModel):
    """What routing asks the notifier to send."""

    model_config = ConfigDict(extra="forbid")
    link_id: UUID = Field(description="Routing's id of the link: a repeated request makes no second message")
    recipient_id: str = Field(min_length=1, max_length=64, description="Whom the account acts as")
    token: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    expires_at: AwareDatetime


def link(public: str, details: dict) -> str:
    """The link a sign-in notification carries."""
    return f"{public.rstrip('/')}{PATH}{details['token']}"


def scrub(text: str | None) -> str | None:
    """Text as reads show it: a sign-in link's token cut off."""
    return _TOKEN_IN.sub(PATH + "…", text) if text else text


def first_step_only(rule: ContactRule) -> ContactRule | None:
    """The rule's first step that reaches the person themself, due at once (a link waits for no one)."""
    own = [s for s in rule.steps if s.target == "self"]
    if not own:
        return None
    return rule.model_copy(update={"steps": [own[0].model_copy(update={"delay_s": 0})]})


class SigninLinkHandlers:
    def __init__(self, default_rule: ContactRule | None, wake_within_s: float):
        self.default = default_rule
        self.wake_within_s = wake_within_s

    async def send(self, conn: asyncpg.Connection, cmd: Command[SigninLinkSend], now: datetime):
        """Send a sign-in link to the person an account acts as (routing only); 0 notifications when
        they have no rule and the community has no default."""
        body = cmd.payload
        recipient = body.recipient_id
        rule = (await store.rules(conn, {recipient})).get(recipient) or self.default
        trimmed = first_step_only(rule) if rule else None
        planned = domain.plan(KIND, body.link_id, recipient, now, "", {recipient: trimmed}, None) if trimmed else []
        rows = [(p, {"cause_id": body.link_id, "kind": KIND, "whistle_id": None, "summons_id": None,
                     "details": {"token": body.token, "expires_at": body.expires_at.isoformat()}, "tier": None,
                     "locale": rule.locale}) for p in planned]
        # not handed to the sender in memory: a row without a whistle goes by the table (NOTIFY wakes it)
        await store.add_notifications(conn, rows, now, self.wake_within_s)
        return Reply.success({"notifications": len(rows)}), []
