"""SMS: a provider interface, and one adapter for the template API the common Chinese SMS gateways
share (an approved signature and template code, the template's parameters, our id as OutId).
A phone number is never logged whole."""

from __future__ import annotations

import json
from typing import Protocol

import aiohttp

from services.notifier.channels import Delivery
from services.notifier.channels.web import post
from services.notifier.domain import Answer, Verdict

# the gateway's own codes for "slow down" or "try later"; anything else but OK is final
RETRY_CODES = {"isv.BUSINESS_LIMIT_CONTROL", "isp.SYSTEM_ERROR", "isp.RAM_PERMISSION_DENY", "Throttling"}
PARAMS = ("category", "place", "tier", "deadline", "link")  # what every template may use


class SmsProvider(Protocol):
    async def send(self, phone: str, template: str, params: dict[str, str], out_id: str) -> Answer:
        """Text one number with an approved template; the answer says whether the gateway took it."""
        ...


class TemplateSmsGateway:
    """POST {base}/sms/send {"PhoneNumbers", "SignName", "TemplateCode", "TemplateParam", "OutId"};
    the gateway answers {"Code": "OK", "BizId": …} or a code saying why not."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, api_key: str, sign_name: str):
        self.http, self.base_url, self.api_key, self.sign_name = http, base_url.rstrip("/"), api_key, sign_name

    async def send(self, phone: str, template: str, params: dict[str, str], out_id: str) -> Answer:
        if not self.base_url:
            return Answer(Verdict.refused, None, "SMS is not configured (NOTIFIER_SMS_BASE_URL)")
        body = {"PhoneNumbers": phone, "SignName": self.sign_name, "TemplateCode": template,
                "TemplateParam": json.dumps(params, ensure_ascii=False), "OutId": out_id}
        answer, parsed = await post(self.http, f"{self.base_url}/sms/send", json.dumps(body, ensure_ascii=False).encode(),
                                    {"Authorization": f"Bearer {self.api_key}", "X-Whistle-Message-Id": out_id})
        if answer.verdict is not Verdict.delivered:
            return answer
        code = parsed.get("Code") if isinstance(parsed, dict) else None
        if code == "OK":
            return answer
        return Answer(Verdict.retry if code in RETRY_CODES else Verdict.refused, answer.status, answer.detail)


class SmsChannel:
    name = "sms"

    def __init__(self, provider: SmsProvider, templates: dict[str, str], default_template: str):
        self.provider, self.templates, self.default_template = provider, templates, default_template

    async def send(self, d: Delivery) -> Answer:
        params = {k: d.message.params[k] for k in PARAMS if k in d.message.params}
        return await self.provider.send(d.address, self.templates.get(d.kind, self.default_template), params,
                                        d.message_id)
