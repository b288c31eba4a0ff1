"""Each channel against a local fake receiver: what it sends, how it signs, what each answer means."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest
from aiosmtpd.controller import Controller
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Request, Response

from services.notifier.channels import Delivery
from services.notifier.channels.mail import EmailChannel
from services.notifier.channels.robots import DingTalkChannel, WeComChannel
from services.notifier.channels.sms import SmsChannel, TemplateSmsGateway
from services.notifier.channels.web import session
from services.notifier.channels.webhook import WebhookChannel
from services.notifier.domain import Verdict
from services.notifier.messages import render

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
DING_SECRET = "SEC0123456789abcdef"
MESSAGE = render("summons.issued", {"category": "roof_leak", "tier": "urgent", "location": {"building": "7"}},
                 {}, "http://x/console/summons/1", "zh-CN", {"roof_leak": ("屋顶漏雨", "Roof leak")})


def delivery(address: str, **kw) -> Delivery:
    return Delivery("0195f0a0-0000-7000-8000-0000000000aa", "summons.issued", address, MESSAGE,
                    {"summons_id": "1"}, **kw)


@pytest.fixture
def fake():
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    server.stop()


def json_of(request: Request) -> dict:
    return json.loads(request.get_data())


async def test_webhooks_are_signed_per_standard_webhooks_with_the_same_id_on_every_attempt(fake):
    seen: list[Request] = []
    answers = iter([Response("busy", 503), Response("{}", 200), Response("gone", 410)])

    def hook(request: Request) -> Response:
        seen.append(request)
        return next(answers)

    fake.expect_request("/hook", method="POST").respond_with_handler(hook)
    async with session(4, 5.0) as http:
        channel = WebhookChannel(http, ["127.0.0.1"])
        d = delivery(fake.url_for("/hook"), secret=SECRET)
        assert (await channel.send(d)).verdict is Verdict.retry
        assert (await channel.send(d)).verdict is Verdict.delivered
        gone = await channel.send(d)
        assert (gone.verdict, gone.status) == (Verdict.refused, 410)
        elsewhere = await WebhookChannel(http, ["hooks.example.org"]).send(d)
    assert elsewhere.verdict is Verdict.refused and len(seen) == 3  # a host off the list is never called
    assert {r.headers["webhook-id"] for r in seen} == {d.message_id}
    body = Webhook(SECRET).verify(seen[1].get_data(), dict(seen[1].headers))
    assert body["type"] == "summons.issued" and body["data"] == {"summons_id": "1"}
    with pytest.raises(Exception):  # signed with this subscriber's secret, not another's
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(seen[1].get_data(), dict(seen[1].headers))


async def test_a_webhook_that_does_not_answer_is_tried_again():
    async with session(4, 1.0) as http:
        answer = await WebhookChannel(http, ["127.0.0.1"]).send(delivery("http://127.0.0.1:9/hook", secret=SECRET))
    assert answer.verdict is Verdict.retry and answer.status is None


async def test_wecom_sends_markdown_or_text_with_mentioned_mobiles_and_reads_errcode(fake):
    seen: list[Request] = []
    answers = iter([{"errcode": 0, "errmsg": "ok"}, {"errcode": 0}, {"errcode": 45009, "errmsg": "api freq out of limit"},
                    {"errcode": 93000, "errmsg": "invalid webhook url"}])

    def robot(request: Request) -> Response:
        seen.append(request)
        return Response(json.dumps(next(answers)), 200, content_type="application/json")

    fake.expect_request("/wecom/send", method="POST").respond_with_handler(robot)
    async with session(4, 5.0) as http:
        wecom = WeComChannel(http, fake.url_for("/wecom/send"))
        assert (await wecom.send(delivery("robot-key-1"))).verdict is Verdict.delivered
        assert (await wecom.send(delivery("robot-key-1", mention=["13812341234"]))).verdict is Verdict.delivered
        assert (await wecom.send(delivery("robot-key-1"))).verdict is Verdict.retry
        assert (await wecom.send(delivery("robot-key-1"))).verdict is Verdict.refused
    assert seen[0].args["key"] == "robot-key-1"
    first, second = json_of(seen[0]), json_of(seen[1])
    assert first["msgtype"] == "markdown" and "屋顶漏雨" in first["markdown"]["content"]
    assert second["msgtype"] == "text" and second["text"]["mentioned_mobile_list"] == ["13812341234"]


async def test_dingtalk_signs_each_request_with_timestamp_and_secret(fake):
    seen: list[Request] = []

    def robot(request: Request) -> Response:
        seen.append(request)
        ts = request.args["timestamp"]
        expected = base64.b64encode(hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(),
                                             hashlib.sha256).digest()).decode()
        ok = request.args["sign"] == expected and abs(int(ts) - time.time() * 1000) < 3_600_000
        return Response(json.dumps({"errcode": 0 if ok else 310000, "errmsg": "ok" if ok else "sign not match"}),
                        200, content_type="application/json")

    fake.expect_request("/dingtalk/send", method="POST").respond_with_handler(robot)
    async with session(4, 5.0) as http:
        ding = DingTalkChannel(http, fake.url_for("/dingtalk/send"))
        good = await ding.send(delivery("dingtalk-token-1", secret=DING_SECRET, mention=["13812341234"]))
        bad = await ding.send(delivery("dingtalk-token-1", secret="SECsomeoneelse00"))
    assert good.verdict is Verdict.delivered and bad.verdict is Verdict.refused
    body = json_of(seen[0])
    assert seen[0].args["access_token"] == "dingtalk-token-1"
    assert body["msgtype"] == "markdown" and body["at"]["atMobiles"] == ["13812341234"]
    assert "@13812341234" in body["markdown"]["text"]


async def test_sms_goes_through_the_gateways_template_api_with_our_id(fake):
    seen: list[Request] = []
    answers = iter([{"Code": "OK", "BizId": "1"}, {"Code": "isv.BUSINESS_LIMIT_CONTROL"},
                    {"Code": "isv.MOBILE_NUMBER_ILLEGAL"}])

    def gateway(request: Request) -> Response:
        seen.append(request)
        return Response(json.dumps(next(answers)), 200, content_type="application/json")

    fake.expect_request("/sms/sms/send", method="POST").respond_with_handler(gateway)
    async with session(4, 5.0) as http:
        sms = SmsChannel(TemplateSmsGateway(http, fake.url_for("/sms"), "key-1", "兴城街道"),
                         {"summons.issued": "SMS_1"}, "SMS_0")
        verdicts = [(await sms.send(delivery("13812341234"))).verdict for _ in range(3)]
        unset = await SmsChannel(TemplateSmsGateway(http, "", "", "x"), {}, "SMS_0").send(delivery("13812341234"))
    assert verdicts == [Verdict.delivered, Verdict.retry, Verdict.refused] and unset.verdict is Verdict.refused
    body = json_of(seen[0])
    assert (body["PhoneNumbers"], body["SignName"], body["TemplateCode"], body["OutId"]) == (
        "13812341234", "兴城街道", "SMS_1", delivery("x").message_id)
    assert json.loads(body["TemplateParam"])["category"] == "屋顶漏雨"
    assert seen[0].headers["Authorization"] == "Bearer key-1"


class Sink:
    def __init__(self, code: str | None = None):
        self.messages: list[bytes] = []
        self.code = code

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        if self.code:
            return self.code
        self.messages.append(envelope.content)
        return "250 OK queued"


async def test_email_is_bilingual_with_a_stable_message_id_and_4xx_is_retried():
    sink = Sink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mail = EmailChannel("127.0.0.1", port, "whistle@example.org", timeout_s=5)
        d = delivery("zhang@example.org")
        assert (await mail.send(d)).verdict is Verdict.delivered
        assert (await mail.send(d)).verdict is Verdict.delivered
        sink.code = "451 try later"
        assert (await mail.send(d)).verdict is Verdict.retry
        sink.code = "554 no"
        assert (await mail.send(d)).verdict is Verdict.refused
    finally:
        controller.stop()
    first, again = (message_from_bytes(m) for m in sink.messages)
    assert first["Message-ID"] == again["Message-ID"] == f"<{d.message_id}@whistle>"
    subject = str(make_header(decode_header(first["Subject"])))
    assert subject == "新派单：屋顶漏雨 / New summons: Roof leak"
    text = first.get_payload(decode=True).decode()
    assert "屋顶漏雨" in text and "Roof leak" in text
    assert (await EmailChannel("", 25, "x@example.org", timeout_s=1).send(d)).verdict is Verdict.refused
