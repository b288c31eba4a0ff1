"""What the notifier's requests take: the gateway builds them, the runtime validates them (422 naming the
field) before a handler runs, and the AsyncAPI document shows them. A sign-in link's request is
`signin.SigninLinkSend`; a contact rule is `shared.contacts.ContactRule`."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.notifier.domain import State
from shared.contacts import ContactRule
from shared.paging import Page

RESPONDER_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ContactsRef(BaseModel):
    """One responder's contact rule, or the community default it falls back on."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=RESPONDER_ID, description="The responder's id")


class ContactsPut(ContactsRef):
    """Create or replace how a responder is reached (a webhook step without a secret gets one, shown once)."""

    rule: ContactRule


class UrgeAsk(BaseModel):
    """催办: remind each listed summons' responder on the first step of its contact rule."""

    model_config = ConfigDict(extra="forbid")
    summons_ids: list[UUID] = Field(min_length=1, max_length=1000, description="1–1000 summons ids")


class NotificationList(Page):
    """Notifications, newest first, with every attempt: by whistle, recipient and state."""

    model_config = ConfigDict(use_enum_values=True)
    whistle_id: UUID | None = Field(default=None, description="Only those about this whistle")
    responder_id: str | None = Field(default=None, max_length=64, description="Only those to this recipient")
    state: State | None = None
