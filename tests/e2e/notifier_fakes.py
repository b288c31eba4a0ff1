"""Local fake receivers for the notifier's channels: a webhook sink that checks Standard Webhooks
signatures, fake WeCom and DingTalk robots (DingTalk's signature checked), a fake SMS gateway, and an
SMTP sink (aiosmtpd). Everything they receive is recorded, with the time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from standardwebhooks import Webhook


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float
    status: int
    signed: bool | None = None  # a webhook's or DingTalk request's signature checked out

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receivers:
    """One HTTP server for webhooks (/hook/<name>), WeCom (/wecom/send), DingTalk (/dingtalk/send) and
    the SMS gateway (/sms/sms/send); one SMTP sink."""

    http_port: int
    smtp_port: int
    received: list[Received] = field(default_factory=list)
    mails: list = field(default_factory=list)
    webhook_secrets: dict[str, str] = field(default_factory=dict)  # name → whsec_…
    dingtalk_secrets: dict[str, str] = field(default_factory=dict)  # access_token → SEC…
    scripts: dict[str, list[int]] = field(default_factory=dict)  # name → statuses to answer first
    delay_s: dict[str, float] = field(default_factory=dict)  # name → how long to take
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: set = field(default_factory=set)  # kept-alive sockets, closed at stop

    def start(self) -> Receivers:
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with receivers.lock:
                    receivers.connections.add(self.connection)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = receivers.answer(self.path, dict(self.headers), body, time.time())
                raw = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:  # the sender was killed while we took our time
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            request_queue_size = 512  # the notifier opens up to 128 connections at once

        self.server = Server(("127.0.0.1", self.http_port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

        class Sink:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                with receivers.lock:
                    receivers.mails.append((envelope.rcpt_tos, message_from_bytes(envelope.content), time.time()))
                return "250 OK queued"

        self.smtp = Controller(Sink(), hostname="127.0.0.1", port=self.smtp_port)
        self.smtp.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()  # frees the port for the next module's fakes…
        with self.lock:  # …and drops kept-alive connections, which would still be answered by these fakes
            for conn in self.connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.smtp.stop()

    def answer(self, target: str, headers: dict[str, str], body: bytes, at: float) -> tuple[int, dict]:
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path, status, signed, answer = parts.path, 200, None, {}
        if path.startswith("/hook/"):
            name = path.removeprefix("/hook/")
            secret = self.webhook_secrets.get(name)
            try:
                Webhook(secret).verify(body, headers)
                signed = True
            except Exception:
                signed = False
            if self.delay_s.get(name):
                time.sleep(self.delay_s[name])
            with self.lock:
                script = self.scripts.get(name)
                status = script.pop(0) if script else (200 if signed else 401)
        elif path == "/wecom/send":
            answer = {"errcode": 0, "errmsg": "ok"}
        elif path == "/dingtalk/send":
            secret = self.dingtalk_secrets.get(query.get("access_token", ""), "")
            ts = query.get("timestamp", "0")
            expected = base64.b64encode(hmac.new(secret.encode(), f"{ts}\n{secret}".encode(),
                                                 hashlib.sha256).digest()).decode()
            signed = bool(secret) and query.get("sign") == expected and abs(int(ts) / 1000 - time.time()) < 3600
            answer = {"errcode": 0, "errmsg": "ok"} if signed else {"errcode": 310000, "errmsg": "sign not match"}
        elif path == "/sms/sms/send":
            answer = {"Code": "OK", "Message": "OK", "BizId": str(len(self.received))}
        else:
            status = 404
        with self.lock:
            self.received.append(Received(path, query, {k.lower(): v for k, v in headers.items()}, body, at,
                                          status, signed))
        return status, answer

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def mail_subjects(self, to: str) -> list[str]:
        with self.lock:
            return [str(make_header(decode_header(m["Subject"]))) for rcpt, m, _ in self.mails if to in rcpt]
