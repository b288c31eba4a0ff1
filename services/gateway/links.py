"""Pages behind the links people get by text or chat: the one-tap report (`/a/{token}`, 一键报到) and
the resident's follow-up form (`/r/{token}` as HTML, 回访). Phone-sized, Simplified Chinese unless
`?lang=en`, no script: a GET only shows a button, so a link previewer fetching the URL does nothing.
"""

from __future__ import annotations

from html import escape
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from services.gateway.bus import Bus
from services.response.payloads import FollowUpAnswer
from shared import links, subjects
from shared.commands import SummonsAction
from shared.contracts import Actor, Reply, SummonsMove
from shared.ids import utcnow

Lang = Annotated[str, Query(pattern=r"^(zh|en)$")]
SATISFACTION = {"satisfied": ("满意", "Satisfied"), "basically_satisfied": ("基本满意", "Basically satisfied"),
                "dissatisfied": ("不满意", "Dissatisfied")}

_STYLE = ("body{font-family:system-ui,'Noto Sans CJK SC','WenQuanYi Zen Hei',sans-serif;max-width:28rem;"
          "margin:0 auto;padding:1rem;line-height:1.5;font-size:1.05rem}h1{font-size:1.3rem}"
          "button{font-size:1.2rem;width:100%;padding:.9rem;margin-top:1rem;border:0;border-radius:.5rem;"
          "background:#c0392b;color:#fff}fieldset{border:1px solid #ccc;border-radius:.5rem;margin:.8rem 0}"
          "label{display:block;padding:.35rem 0}.lang{float:right;font-size:.9rem}.muted{color:#666}")


def wants_html(request: Request) -> bool:
    """A browser (Accept: text/html first or alone) rather than an API client."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]


def page(status: int, lang: str, title: tuple[str, str], body_zh: str, body_en: str, path: str) -> HTMLResponse:
    """One small page in `lang`, with a link to the same page in the other language."""
    en = lang == "en"
    other = f'<a class="lang" href="{escape(path)}{"" if en else "?lang=en"}">{"中文" if en else "English"}</a>'
    html = (f'<!doctype html><html lang="{"en" if en else "zh-CN"}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta name="robots" content="noindex"><title>{escape(title[en])}</title><style>{_STYLE}</style>'
            f'</head><body>{other}<h1>{escape(title[en])}</h1>{body_en if en else body_zh}</body></html>')
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _said(reply: Reply) -> str:
    """A refusal's bilingual reason, as the owner wrote it."""
    return f'<p class="muted">{escape(reply.refusal.reason)}</p>'


def build_router(bus: Bus, secret: str) -> APIRouter:
    router = APIRouter(tags=["links"])

    def claim(token: str, lang: str, path: str) -> links.AckClaim | HTMLResponse:
        try:
            return links.verify(secret, token, utcnow())
        except links.LinkExpired:
            return page(410, lang, ("链接已过期", "Link expired"),
                        "<p>报到期限已过，此链接已失效。请在派单页面报到。</p>",
                        "<p>The report deadline has passed and this link no longer works. Report from the summons"
                        " page.</p>", path)
        except links.LinkInvalid:
            return page(403, lang, ("链接无效", "Invalid link"), "<p>此链接无效或已被改动。</p>",
                        "<p>This link is not valid, or it was altered.</p>", path)

    @router.get("/a/{token}", response_class=HTMLResponse, summary="One-tap report page: shows a button / 一键报到")
    async def ack_page(request: Request, token: Annotated[str, Path(max_length=400)], lang: Lang = "zh") -> HTMLResponse:
        found = claim(token, lang, request.url.path)
        if isinstance(found, HTMLResponse):
            return found
        action = escape(request.url.path + ("?lang=en" if lang == "en" else ""))
        return page(200, lang, ("一键报到", "Report with one tap"),
                    f'<p>确认您（{escape(found.responder_id)}）已收到派单并报到。</p>'
                    f'<form method="post" action="{action}"><button type="submit">报到</button></form>',
                    f'<p>Confirm that you ({escape(found.responder_id)}) received the summons and report.</p>'
                    f'<form method="post" action="{action}"><button type="submit">Report</button></form>',
                    request.url.path)

    @router.post("/a/{token}", response_class=HTMLResponse, summary="Record the report (报到) the link names, once")
    async def ack(request: Request, token: Annotated[str, Path(max_length=400)], lang: Lang = "zh") -> HTMLResponse:
        found = claim(token, lang, request.url.path)
        if isinstance(found, HTMLResponse):
            return found
        # exactly the responder's own POST /v1/summons/{id}/report; the nonce as the key makes a second tap
        # get the first answer back, not a second report nor a 409
        move = SummonsAction(summons_id=found.summons_id, action=SummonsMove.report)
        reply = await bus.command(subjects.CMD_RESPONSE_ACT, Actor(role="responder", id=found.responder_id),
                                  move.model_dump(mode="json"), idempotency_key=f"ack-link:{found.nonce}")
        path = request.url.path
        if reply.ok:
            return page(200, lang, ("已报到", "Reported"),
                        "<p>已为您报到，谢谢。再次点击不会重复报到。</p>",
                        "<p>Your report is recorded, thank you. Tapping again changes nothing.</p>", path)
        code = reply.refusal.code
        if code.startswith("illegal_report_from_"):  # reported by other means already, or moved on since
            return page(409, lang, ("已报到", "Already reported"), "<p>此派单已经报到或已办理，无需再次报到。</p>" + _said(reply),
                        "<p>This summons was already reported or has moved on; nothing more to do.</p>" + _said(reply),
                        path)
        return page(reply.refusal.status, lang, ("未能报到", "Could not report"), "<p>未能报到。</p>" + _said(reply),
                    "<p>The report could not be recorded.</p>" + _said(reply), path)

    @router.post("/r/{token}/answer", response_class=HTMLResponse,
                 summary="The resident's follow-up form (form post), answered once / 居民回访表单")
    async def resident_form(request: Request, token: Annotated[str, Path(min_length=8, max_length=64)],
                            lang: Lang = "zh") -> HTMLResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        back = f"/r/{token}"
        try:
            answer = FollowUpAnswer(token=token, solved=form.get("solved") == "yes",
                                    satisfaction=form.get("satisfaction", ""))
        except ValidationError:
            return page(422, lang, ("请完整填写", "Please answer both questions"),
                        f'<p>请选择是否解决以及满意程度。<a href="{back}">返回</a></p>',
                        f'<p>Choose whether it was solved and how satisfied you are. <a href="{back}?lang=en">'
                        "Back</a></p>", back)
        reply = await bus.command(subjects.CMD_RESPONSE_FOLLOW_UP, RESIDENT, answer.model_dump(mode="json"))
        if reply.ok:
            return page(200, lang, ("感谢您的评价", "Thank you"), "<p>您的回访意见已记录。</p>",
                        "<p>Your answer is recorded.</p>", back)
        return refused_page(reply, lang, back)

    return router


RESIDENT = Actor(role="resident", id="follow-up-link")  # the link itself is the credential


def refused_page(reply: Reply, lang: str, path: str) -> HTMLResponse:
    """Why a follow-up link cannot be answered: already answered, expired, reopened, or unknown."""
    titles = {409: ("已回访", "Already answered"), 410: ("链接已失效", "Link no longer works"),
              404: ("链接无效", "Invalid link")}
    title = titles.get(reply.refusal.status, ("未能提交", "Could not send"))
    return page(reply.refusal.status, lang, title, _said(reply), _said(reply), path)


def resident_page(reply: Reply, token: str, lang: str) -> HTMLResponse:
    """The follow-up form for a live link (from `qry.response.follow_up_link`), or why it cannot be answered."""
    path = f"/r/{token}"
    if not reply.ok:
        return refused_page(reply, lang, path)
    if reply.data.get("answered"):
        return page(409, lang, ("已回访", "Already answered"), "<p>此链接已经提交过回访意见，谢谢。</p>",
                    "<p>This follow-up was already answered, thank you.</p>", path)
    scale = [s for s in reply.data.get("satisfaction", SATISFACTION) if s in SATISFACTION]

    def form(en: bool) -> str:
        k = 1 if en else 0
        yes_no = "".join(f'<label><input type="radio" name="solved" value="{v}" required> {t[k]}</label>'
                         for v, t in (("yes", ("已解决", "Yes, solved")), ("no", ("未解决", "No, not solved"))))
        levels = "".join(f'<label><input type="radio" name="satisfaction" value="{s}" required> {SATISFACTION[s][k]}'
                         "</label>" for s in scale)
        return (f'<form method="post" action="{path}/answer{"?lang=en" if en else ""}">'
                f'<fieldset><legend>{("Was your problem solved?", "您反映的问题解决了吗？")[not en]}</legend>{yes_no}'
                f'</fieldset><fieldset><legend>{("How satisfied are you?", "您是否满意？")[not en]}</legend>{levels}'
                f'</fieldset><button type="submit">{("Send", "提交")[not en]}</button></form>')

    return page(200, lang, ("回访", "Follow-up"), form(False), form(True), path)
