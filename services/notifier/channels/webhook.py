"""Outgoing webhooks signed per Standard Webhooks: webhook-id (the notification id), webhook-timestamp,
webhook-signature (v1, HMAC-SHA256 with the subscriber's own secret); only to allowed hosts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import urlsplit

import aiohttp
from standardwebhooks import Webhook

from services.notifier.channels import Delivery
from services.notifier.channels.web import post
from services.notifier.domain import Answer, Verdict


@lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


class WebhookChannel:
    name = "webhook"

    def __init__(self, http: aiohttp.ClientSession, allowed_hosts: list[str]):
        self.http = http
        self.allowed = {h.lower() for h in allowed_hosts}

    def allows(self, url: str) -> bool:
        """Only hosts on the allow-list: a contact rule must not make the notifier call inside the network."""
        host = urlsplit(url).hostname
        return bool(host) and host.lower() in self.allowed

    async def send(self, d: Delivery) -> Answer:
        if not self.allows(d.address):  # the list may have changed since the rule was accepted
            return Answer(Verdict.refused, None, "host not on the webhook allow-list")
        now = datetime.now(UTC)
        body = json.dumps({"type": d.kind, "timestamp": now.isoformat(), "data": d.data},
                          ensure_ascii=False, separators=(",", ":"))
        headers = {
            "webhook-id": d.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": _signer(d.secret).sign(d.message_id, now, body),
        }
        answer, _ = await post(self.http, d.address, body.encode(), headers)
        return answer
