"""Turn a pydantic ValidationError into a refusal that names the field and the reason; what text fields may
hold (no control characters), ids as typed on any keyboard (NFKC), and the masking of free text shown in
public (Open311: phones, ID numbers, e-mails, room numbers, known names)."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from shared.contracts import Refusal

# errors raised across several fields, and the field a person should fix
_FIELD_OF = {"missing_reason_code": "reason_code", "missing_reason": "reason", "missing_target": "to_responder_id"}


def refusal_from(exc: ValidationError) -> Refusal:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or _FIELD_OF.get(first["type"])
    return Refusal(status=422, code="invalid", field=field, reason=first["msg"])


# --- text fields: no control characters ----------------------------------------------------------------------------

# C0 controls but tab, newline and carriage return; DEL and the C1 controls; half a surrogate pair; U+FFFE and
# U+FFFF. XML 1.0 cannot carry the C0 ones nor the last three (not even as &#1;): one stored in a whistle would make
# Open311's XML unparseable for every client that lists it
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
CONTROL_REASON = ("control characters are not allowed (tab, newline and carriage return are)"
                  " / 不能包含控制字符（制表符、换行、回车除外）")


def control_character(text: str) -> str | None:
    """The first character a text field may not hold, or None."""
    found = _CONTROL.search(text)
    return found.group() if found else None


def no_control(value: Any) -> Any:
    """A text (or each text of a list) without control characters, else the 422 naming the field."""
    for text in value if isinstance(value, list) else (value,):
        if isinstance(text, str) and _CONTROL.search(text):
            raise PydanticCustomError("control_character", CONTROL_REASON)
    return value


def text_fields(*fields: str):
    """A model's validator refusing control characters in these text fields (`_texts = text_fields("note")`);
    after the field's own checks, so its length and pattern messages stay as they were."""
    return field_validator(*fields)(staticmethod(no_control))


# --- ids: one form however they are typed ---------------------------------------------------------------------------


def nfkc(value: Any) -> Any:
    """An id as typed on any keyboard, in one form (NFKC): full-width ｍ-００１ is m-001, before it is checked."""
    return unicodedata.normalize("NFKC", value) if isinstance(value, str) else value


# an id field: `summons_id: Id = Field(min_length=1, max_length=64)`; an optional one takes `id_fields` below
# (a validator before an optional field's type would turn its length message into a list's)
Id = Annotated[str, BeforeValidator(nfkc)]


def id_fields(*fields: str):
    """A model's validator NFKC-normalising these id fields before they are checked."""
    return field_validator(*fields, mode="before")(staticmethod(nfkc))


def nfkc_path(path: str) -> str:
    """A URL path with each segment NFKC-normalised (ids in paths, as in bodies); a segment that would become
    '/', '.' or '..' is left as it is, so normalising never adds a segment nor climbs one."""
    if path.isascii():
        return path
    segments = []
    for segment in path.split("/"):
        normal = nfkc(segment)
        segments.append(segment if "/" in normal or normal in (".", "..") else normal)
    return "/".join(segments)


# --- free text shown in public: masked ------------------------------------------------------------------------------

# 18-character resident ID numbers (身份证, the last may be X) and the old 15-digit ones
_ID_CARD = re.compile(r"(?<![\dA-Za-z])(?:\d{17}[\dXx]|\d{15})(?![\dA-Za-z])")
# an e-mail address; its local part is every character before the @ up to a space or punctuation (a Chinese
# sentence runs into it: more is masked rather than less)
_EMAIL = re.compile(r"[^\s@,;:<>()\[\]\"'，。；：、！？（）《》【】]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONES = (
    re.compile(r"(?<![\dA-Za-z])(?:\+?86[\s-]?)?1[3-9]\d(?:[\s-]?\d){8}(?!\d)"),  # mainland mobiles
    re.compile(r"(?<![\dA-Za-z])(?:\(0\d{2,3}\)|0\d{2,3})[\s-]?\d{3,4}[\s-]?\d{4}(?!\d)"),  # landlines, area code
    re.compile(r"(?<![\dA-Za-z.-])[2-9]\d{3}[\s-]?\d{4}(?![\d.])"),  # an 8-digit local number
)
# a room: what follows a unit (2单元501), a building's three digits and more (3号楼501: buildings are 1–22),
# digits before 室 / 房, three digits and more before 号, 3-2-501, Room / Apt / Flat / # 501
_ROOMS = (  # each with the words it needs: a pattern runs only on a text holding one of them
    (("单元",), re.compile(r"(?<=单元)(\s*[-－]?\s*)(\d{1,5})")),
    (("号楼", "栋", "幢", "座"), re.compile(r"(?:(?<=号楼)|(?<=[栋幢座]))(\s*[-－]?\s*)(\d{3,5})(?!\d)")),
    (("室", "房"), re.compile(r"(?<!\d)()(\d{1,5})(?=\s*(?:室|房))")),
    (("号",), re.compile(r"(?<!\d)()(\d{3,5})(?=\s*号(?!楼))")),
    (("-",), re.compile(r"(?<![\d-])(\d{1,3}\s*-\s*\d{1,2}\s*-\s*)(\d{2,5})(?![\d-])")),
    (("#", "room", "rm", "apt", "flat", "suite"),
     re.compile(r"(?i)(\b(?:room|rm|apt|apartment|flat|suite)\.?[\s#_-]*|#\s*)(\d{1,5}[A-Za-z]?)\b")),
)
# a surname before a form of address (张先生, 刘阿姨), a name after a label (联系人：张伟), and Mr / Ms so-and-so
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
            "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
_LABELS = ("联系人", "报修人", "反映人", "投诉人", "来电人", "姓名", "业主", "住户")
_FORMS_OF_ADDRESS = ("先生", "女士", "小姐", "阿姨", "大爷", "大妈", "大娘", "大姐", "大哥", "师傅", "奶奶", "爷爷", "老师",
                     "同志", "叔叔", "阿婆")
_ADDRESSED = (
    re.compile(f"()([{SURNAMES}])(?={'|'.join(_FORMS_OF_ADDRESS)})"),
    re.compile(f"((?:{'|'.join(_LABELS)})[:：\\s]*)([{SURNAMES}][\u4e00-\u9fff]{{1,2}})"),
    re.compile(r"(\b(?:Mr|Ms|Mrs|Miss|Dr|Mx)\.?\s+)([A-Z][A-Za-z'-]+)"),
)


_DIGIT = re.compile("[0-9]")
_WIDE = re.compile(r"(?![0-9])[\d＠＋－]")  # what _as_ascii reads as ASCII
_DIGITS = re.compile(r"[0-9][0-9\s()+-]{5,}[0-9]")  # seven digits and more, maybe spaced: a phone or an ID could be


@functools.cache
def _as_ascii() -> dict[int, str]:
    """Every script's decimal digits (full-width １３８ too) and full-width ＠ ＋ －, as ASCII: read so before masking."""
    table = {c: str(unicodedata.decimal(chr(c))) for c in range(0x80, 0x10000) if unicodedata.category(chr(c)) == "Nd"}
    return {**table, ord("＠"): "@", ord("＋"): "+", ord("－"): "-"}


def _masked_email(local: str, domain: str) -> str:
    """z***@example.org; never longer than the address (a page of them must still fit in one NATS message)."""
    return f"{local[:1] + '*' * min(3, len(local) - 1) if len(local) > 1 else '*'}@{domain}"


def _stars(text: str) -> str:
    return "*" * len(text)


def mask_digits(digits: str) -> str:
    """138****5678: the first three and last four of a phone (only the last four of a short one)."""
    d = [c for c in digits if c.isdigit()]
    if len(d) == 13 and d[:2] == ["8", "6"]:  # +86: the mobile without the country code
        d = d[2:]
    if len(d) >= 11:
        return "".join(d[:3]) + "*" * (len(d) - 7) + "".join(d[-4:])
    return "*" * (len(d) - 4) + "".join(d[-4:])


def _cjk(text: str) -> bool:
    return all("\u4e00" <= c <= "\u9fff" for c in text)


def _name_forms(names: Iterable[str | None]) -> list[str]:
    """Each name and the forms a reader could recognise: 'Wei Zhang', 'Zhang Wei', 'Zhang', 'Wei'; '伟 王' (an
    Open311 client's first and last name) as 王伟 and 伟王 too; 王建国 and 建国; a responder's 'name (branch 3)'
    without the bracket. Longest first; none shorter than two characters."""
    forms: set[str] = set()
    for name in names:
        if not name:
            continue
        name = re.split(r"\s*[(（]", name.strip(), maxsplit=1)[0].strip()
        parts = name.split()
        forms.update([name, *parts, " ".join(reversed(parts))])
        if len(parts) > 1 and all(_cjk(p) for p in parts):
            forms.update(["".join(parts), "".join(reversed(parts))])
        forms.update(p[1:] for p in parts if len(p) >= 3 and _cjk(p))
    return sorted((f for f in forms if len(f) >= 2), key=len, reverse=True)


def public_text(text: str | None, names: Iterable[str | None] = ()) -> str | None:
    """Free text as it may be shown to anyone: ID numbers, e-mail addresses, phones and room numbers masked, and
    the names given (the reporter's, the party members summoned) and surnames before a form of address starred."""
    if not text:
        return text
    if not text.isascii() and _WIDE.search(text):
        text = text.translate(_as_ascii())
    # each pattern only where it can match: 1,000 rows of 2,000 characters are an Open311 page
    if "@" in text:
        text = _EMAIL.sub(lambda m: _masked_email(*m.group().rsplit("@", 1)), text)
    patterns = []
    if _DIGITS.search(text):
        text = _ID_CARD.sub(lambda m: m.group()[:3] + "*" * (len(m.group()) - 7) + m.group()[-4:], text)
        for phone in _PHONES:
            text = phone.sub(lambda m: mask_digits(m.group()), text)
    if _DIGIT.search(text):
        lowered = text.lower()
        patterns += [room for words, room in _ROOMS if any(w in lowered for w in words)]
    forms_of_address, labels, english = _ADDRESSED
    if any(f in text for f in _FORMS_OF_ADDRESS):
        patterns.append(forms_of_address)
    if any(label in text for label in _LABELS):
        patterns.append(labels)
    if "M" in text or "D" in text:
        patterns.append(english)
    for pattern in patterns:
        text = pattern.sub(lambda m: m.group(1) + _stars(m.group(2)), text)
    lowered = text.lower()
    forms = [f for f in _name_forms(names) if f.lower() in lowered]
    if forms:
        text = re.sub("|".join(re.escape(f) for f in forms), lambda m: _stars(m.group()), text, flags=re.IGNORECASE)
    return text
