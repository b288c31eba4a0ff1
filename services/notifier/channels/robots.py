"""The group robots communities use: WeCom (企业微信群机器人) and DingTalk (钉钉自定义机器人, signed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import quote_plus

import aiohttp

from services.notifier.channels import Delivery
from services.notifier.channels.web import post, robot_answer
from services.notifier.domain import Answer


def _markdown(d: Delivery) -> str:
    return f"**{d.message.subject}**\n\n{d.message.text}\n\n> {d.message_id}"


class WeComChannel:
    """POST {base}?key=…; markdown, or text with `mentioned_mobile_list` when people are to be @-ed
    (WeCom's markdown messages cannot mention by mobile number)."""

    name = "wecom"

    def __init__(self, http: aiohttp.ClientSession, base_url: str):
        self.http = http
        self.base_url = base_url

    async def send(self, d: Delivery) -> Answer:
        if d.mention:
            body = {"msgtype": "text", "text": {"content": f"{d.message.text}\n{d.message_id}",
                                                "mentioned_mobile_list": d.mention}}
        else:
            body = {"msgtype": "markdown", "markdown": {"content": _markdown(d)}}
        answer, parsed = await post(self.http, f"{self.base_url}?key={quote_plus(d.address)}",
                                    json.dumps(body, ensure_ascii=False).encode(), {"X-Whistle-Message-Id": d.message_id})
        return robot_answer(answer, parsed)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature: base64(HMAC-SHA256(key=secret, "{timestamp}\\n{secret}"))."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class DingTalkChannel:
    """POST {base}?access_token=…&timestamp=…&sign=…; markdown, the @-ed mobiles named in the text too
    (DingTalk only notifies those written in it)."""

    name = "dingtalk"

    def __init__(self, http: aiohttp.ClientSession, base_url: str):
        self.http = http
        self.base_url = base_url

    async def send(self, d: Delivery) -> Answer:
        ts = int(time.time() * 1000)
        sign = quote_plus(dingtalk_sign(d.secret or "", ts))
        url = f"{self.base_url}?access_token={quote_plus(d.address)}&timestamp={ts}&sign={sign}"
        text = _markdown(d) + "".join(f" @{m}" for m in d.mention)
        body = {"msgtype": "markdown", "markdown": {"title": d.message.subject, "text": text},
                "at": {"atMobiles": d.mention, "isAtAll": False}}
        answer, parsed = await post(self.http, url, json.dumps(body, ensure_ascii=False).encode(),
                                    {"X-Whistle-Message-Id": d.message_id})
        return robot_answer(answer, parsed)
