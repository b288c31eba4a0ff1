"""One Babel message catalogue per language, read from its .po at start; a Jinja environment per language."""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent
LOCALES = {"zh-CN": "zh_CN", "en": "en"}  # what the cookie says → the catalogue's folder
DEFAULT = "zh-CN"


def N_(message: str) -> str:
    """Mark a string for the catalogue; it is translated where it is shown."""
    return message


def load(locale: str) -> Translations:
    """The catalogue of one language, compiled in memory from its .po (no .mo kept in git)."""
    path = HERE / "locale" / LOCALES[locale] / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as f:
        catalog = read_po(f, locale=LOCALES[locale])
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf)


def pick(cookie: str | None, accept_language: str | None = None) -> str:
    """The language to answer in: the cookie's, else zh-CN (the community's language)."""
    del accept_language  # zh-CN is the default whatever the browser says: the switch is explicit
    return cookie if cookie in LOCALES else DEFAULT


def environments(globals_: dict) -> dict[str, Environment]:
    """A Jinja environment per language (one each, so concurrent requests never swap translations)."""
    envs = {}
    for locale in LOCALES:
        env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                          extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
        env.install_gettext_translations(load(locale), newstyle=True)
        env.globals.update(globals_, locale=locale, lang_attr="zh-CN" if locale == "zh-CN" else "en")
        envs[locale] = env
    return envs


def half(reason: str | None, locale: str) -> str:
    """The chosen language's half of a service's bilingual reason ("English / 中文")."""
    if not reason:
        return ""
    english, sep, chinese = reason.rpartition(" / ")
    if not sep:
        return reason
    return chinese if locale == "zh-CN" else english
