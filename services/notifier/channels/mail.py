"""Email over SMTP (aiosmtplib): the subject and the body in Chinese and English; the same
Message-ID on every attempt."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aiosmtplib

from services.notifier.channels import Delivery
from services.notifier.domain import Answer, Verdict


class EmailChannel:
    name = "email"

    def __init__(self, host: str, port: int, sender: str, *, timeout_s: float, use_tls: bool = False,
                 start_tls: bool = False, username: str | None = None, password: str | None = None):
        self.host, self.port, self.sender, self.timeout_s = host, port, sender, timeout_s
        self.use_tls, self.start_tls, self.username, self.password = use_tls, start_tls, username, password

    def message(self, d: Delivery) -> EmailMessage:
        m = d.message
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = d.address
        msg["Subject"] = f"{m.subject_zh} / {m.subject_en}"
        msg["Message-ID"] = f"<{d.message_id}@whistle>"
        msg.set_content(f"{m.text_zh}\n\n——\n\n{m.text_en}\n")
        return msg

    async def send(self, d: Delivery) -> Answer:
        if not self.host:
            return Answer(Verdict.refused, None, "email is not configured (NOTIFIER_SMTP_HOST)")
        try:
            _, reply = await aiosmtplib.send(
                self.message(d), hostname=self.host, port=self.port, use_tls=self.use_tls,
                start_tls=self.start_tls or None, username=self.username, password=self.password,
                timeout=self.timeout_s)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            return Answer(Verdict.retry if all(400 <= c < 500 for c in codes) else Verdict.refused,
                          codes[0] if codes else None, str(exc)[:200])
        except aiosmtplib.SMTPResponseException as exc:  # 4xx: try again later; 5xx: never
            return Answer(Verdict.retry if 400 <= exc.code < 500 else Verdict.refused, exc.code, exc.message[:200])
        except (aiosmtplib.SMTPException, asyncio.TimeoutError, OSError) as exc:
            return Answer(Verdict.retry, None, f"{type(exc).__name__}: {exc}"[:200])
        return Answer(Verdict.delivered, 250, reply[:200])
