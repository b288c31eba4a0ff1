"""Message texts: one template per event kind, in Simplified Chinese (the default) and English.

Pure: the facts (whistle, summons, the event's details) and the links come in, text goes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notifier.domain import BEIJING

TIERS = {"routine": ("小事帮办", "routine"), "urgent": ("急事快办", "urgent"), "complex": ("难事特办", "complex")}
CLOCKS = {"report": ("报到", "report"), "on_site": ("到场", "arrival"), "resolve": ("办结", "resolution")}
LEVELS = {"responder": ("责任人", "the responder"), "superior": ("上级", "the superior"),
          "street_command": ("街道指挥中心", "the street command centre"), "district": ("区级", "the district")}

# {category} {place} {tier} {deadline} {link} {ack} {expires} and the event's own details; zh first, then en
TEMPLATES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "summons.issued": (
        ("新派单：{category}", "【吹哨报到】{responder}，您有新派单：{category}（{tier}），地点：{place}，"
         "请于 {deadline} 前报到。详情：{link}{ack}"),
        ("New summons: {category}", "[Whistle] {responder}, you are summoned: {category} ({tier}) at {place}; "
         "report by {deadline}. Details: {link}{ack}"),
    ),
    "summons.urged": (
        ("催办：{category}", "【吹哨报到】催办：{responder}，请尽快处理派单：{category}（{tier}），地点：{place}，"
         "报到期限 {deadline}。详情：{link}{ack}"),
        ("Reminder: {category}", "[Whistle] Reminder for {responder}: please act on {category} ({tier}) at {place}; "
         "report by {deadline}. Details: {link}{ack}"),
    ),
    "sla.warned": (
        ("即将超时：{category}", "【吹哨报到】派单即将超时：{category}（{tier}），地点：{place}，{clock}期限 {deadline}。"
         "详情：{link}"),
        ("Deadline near: {category}", "[Whistle] Deadline near: {category} ({tier}) at {place}; {clock} due "
         "{deadline}. Details: {link}"),
    ),
    "sla.breached": (
        ("已超时：{category}", "【吹哨报到】派单已超时：{category}（{tier}），地点：{place}，{clock}期限 {deadline} 已过。"
         "详情：{link}"),
        ("Deadline missed: {category}", "[Whistle] Deadline missed: {category} ({tier}) at {place}; {clock} was "
         "due {deadline}. Details: {link}"),
    ),
    "escalation.raised": (
        ("三呼三应：{category}", "【吹哨报到】三呼三应第{step}步，报至{level}：{responder}的派单未响应——{category}"
         "（{tier}），地点：{place}，期限 {deadline}。详情：{link}"),
        ("Escalated to you: {category}", "[Whistle] Escalation step {step}, to {level}: {responder} has not "
         "answered — {category} ({tier}) at {place}, due {deadline}. Details: {link}"),
    ),
    "summons.returned": (
        ("退单：{category}", "【吹哨报到】{responder}退单：{category}（{tier}），地点：{place}，原因：{reason}。"
         "详情：{link}"),
        ("Returned: {category}", "[Whistle] {responder} returned the summons: {category} ({tier}) at {place}; "
         "reason: {reason}. Details: {link}"),
    ),
    "summons.transferred": (
        ("转派：{category}", "【吹哨报到】{responder}将派单转派给 {to}：{category}（{tier}），地点：{place}，"
         "原因：{reason}。详情：{link}"),
        ("Transferred: {category}", "[Whistle] {responder} transferred the summons to {to}: {category} ({tier}) "
         "at {place}; reason: {reason}. Details: {link}"),
    ),
    "summons.extension_requested": (
        ("延期申请：{category}", "【吹哨报到】{responder}申请将{clock}期限延至 {new_deadline}：{category}（{tier}），"
         "地点：{place}，原因：{reason}。请审批：{link}"),
        ("Extension asked: {category}", "[Whistle] {responder} asks to move the {clock} deadline to "
         "{new_deadline}: {category} ({tier}) at {place}; reason: {reason}. Decide: {link}"),
    ),
    "summons.extension_granted": (
        ("延期已批准：{category}", "【吹哨报到】延期已批准：{category}，地点：{place}，{clock}期限改为 {new_deadline}。"
         "详情：{link}"),
        ("Extension granted: {category}", "[Whistle] Extension granted: {category} at {place}; the {clock} "
         "deadline is now {new_deadline}. Details: {link}"),
    ),
    "summons.extension_refused": (
        ("延期未批准：{category}", "【吹哨报到】延期未批准：{category}，地点：{place}，{clock}期限不变。详情：{link}"),
        ("Extension refused: {category}", "[Whistle] Extension refused: {category} at {place}; the {clock} "
         "deadline stands. Details: {link}"),
    ),
    "whistle.verified": (
        ("请评价：{category}", "【吹哨报到】您反映的“{category}”问题（{place}）已办结，请告诉我们是否解决、是否满意："
         "{link}"),
        ("How did we do: {category}", "[Whistle] The problem you reported, {category} at {place}, is fixed. "
         "Was it solved, and are you satisfied? {link}"),
    ),
    # about no whistle: only {link} and {expires}
    "account.signin_link": (
        ("控制台登录链接", "【吹哨报到】您的控制台登录链接（仅可使用一次，{expires}前有效）：{link} "
         "如非本人申请，请忽略本消息。"),
        ("Your console sign-in link", "[Whistle] Your console sign-in link (works once, until {expires}): {link} "
         "If you did not ask for it, ignore this message."),
    ),
}


@dataclass(frozen=True)
class Message:
    """One notification's text: the subject and body in the recipient's language, and both languages
    (email carries both), with the parameters an SMS template gets."""

    subject: str
    text: str
    subject_zh: str
    text_zh: str
    subject_en: str
    text_en: str
    params: dict[str, str]


def local_time(at: datetime | str | None, zh: bool) -> str:
    """A time as Beijing people read it: 2026-03-06 17:00 (北京时间)."""
    if at is None:
        return "见详情" if zh else "see details"
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") + (" (北京时间)" if zh else " (Beijing time)")


def place(location: dict | None, zh: bool) -> str:
    """Building (and unit, address, service point) as written on the whistle."""
    if not location:
        return "—"
    unit = location.get("unit")
    parts = [f"{location['building']}号楼{unit + '单元' if unit else ''}" if zh
             else f"Building {location['building']}{', unit ' + unit if unit else ''}"]
    for key in ("address", "service_point"):
        if location.get(key):
            parts.append(location[key])
    return ("，" if zh else ", ").join(parts)


def render(kind: str, facts: dict[str, Any], details: dict[str, Any], link: str, locale: str,
           category_names: dict[str, tuple[str, str]]) -> Message:
    """The message of a notification of `kind`, in both languages, `locale` first."""
    texts, values = {}, {}
    for zh, (subject, body) in zip((True, False), TEMPLATES[kind], strict=True):
        values[zh] = _values(facts, details, link, zh, category_names)
        texts[zh] = (subject.format(**values[zh]), body.format(**values[zh]))
    first = texts[locale != "en"]
    return Message(first[0], first[1], *texts[True], *texts[False], params=values[True])


def _values(facts: dict[str, Any], d: dict[str, Any], link: str, zh: bool,
            names: dict[str, tuple[str, str]]) -> dict[str, str]:
    k = 0 if zh else 1
    category = facts.get("category") or d.get("category") or "—"
    clock = d.get("clock") or "report"
    deadline = d.get("deadline") or facts.get(f"{clock}_deadline")
    return {
        "category": names.get(category, (category, category))[k],
        "place": place(facts.get("location"), zh),
        "tier": TIERS.get(facts.get("tier") or "", ("—", "—"))[k],
        "deadline": local_time(deadline, zh),
        "new_deadline": local_time(d.get("new_deadline"), zh),
        "expires": local_time(d.get("expires_at"), zh),
        "clock": CLOCKS.get(clock, (clock, clock))[k],
        "level": LEVELS.get(d.get("level", ""), ("", ""))[k],
        "step": str(d.get("step", "")),
        "responder": facts.get("responder_name") or d.get("responder_id") or "—",
        "to": d.get("to_responder_id") or "—",
        "reason": d.get("reason") or d.get("reason_code") or "—",
        "link": link,
        # the one-tap report link (一键报到), when the sender put one in the details
        "ack": ((" 一键报到：" if zh else " Report with one tap: ") + d["ack_link"]) if d.get("ack_link") else "",
    }
