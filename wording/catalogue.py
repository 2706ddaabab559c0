"""The catalogues: loading, language choice, lookup with fallback, HTML rendering."""

from __future__ import annotations

import html
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from babel.messages.pofile import read_po

__all__ = [
    "COOKIE",
    "DEFAULT",
    "LANGUAGES",
    "Message",
    "catalogue_json",
    "has",
    "keys",
    "language",
    "messages",
    "negotiate",
    "render",
    "render_html",
    "script",
    "text",
]

#: The languages, default first (BCP 47 tags, as in ``<html lang>``).
LANGUAGES = ("zh-CN", "en")
DEFAULT = "zh-CN"
#: The cookie that remembers a browser's choice (set by the pages' language switch).
COOKIE = "cardsvc_lang"
#: What a key missing from every catalogue reads as.
MISSING = "common.text-missing"

_FILES = {"zh-CN": "zh_CN.po", "en": "en.po"}
_PLACEHOLDER = re.compile(r"\{\{t:([A-Za-z0-9_.-]+)\}\}")


@cache
def _load(lang: str) -> Mapping[str, str]:
    source = resources.files("wording").joinpath("locales", _FILES[lang])
    with source.open("rb") as handle:
        catalog = read_po(handle, locale=lang.replace("-", "_"))
    out: dict[str, str] = {}
    for message in catalog:
        if message.id and isinstance(message.id, str) and isinstance(message.string, str):
            out[message.id] = message.string
    return out


def language(tag: str | None) -> str:
    """One of :data:`LANGUAGES` for a language tag: ``en-US`` -> ``en``, ``zh-Hans-CN`` ->
    ``zh-CN``; anything else (or nothing) -> the default, zh-CN."""
    primary = (tag or "").strip().lower().replace("_", "-").split("-")[0]
    return "en" if primary == "en" else DEFAULT


def negotiate(*, cookie: str | None = None, accept_language: str | None = None) -> str:
    """The language for a request: the browser's remembered choice (the cookie) if it names
    one of ours, else the first of ours in ``Accept-Language`` by preference, else zh-CN."""
    if cookie and cookie.strip().lower().split("-")[0] in ("zh", "en"):
        return language(cookie)
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "")[:500].split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in ("zh", "en") and quality > 0:
            ranked.append((-quality, index, primary))
    if not ranked:
        return DEFAULT
    return language(min(ranked)[2])


def keys() -> frozenset[str]:
    """Every message id of the default catalogue."""
    return frozenset(_load(DEFAULT))


def has(key: str) -> bool:
    return bool(_load(DEFAULT).get(key))


def messages(lang: str) -> dict[str, str]:
    """The whole catalogue of ``lang`` (an unknown language: zh-CN), with zh-CN filling
    any key missing or empty in it."""
    chosen = _load(language(lang))
    return {key: chosen.get(key) or zh for key, zh in _load(DEFAULT).items()}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


_FORMATTER = string.Formatter()


def _fill(template: str, params: Mapping[str, Any]) -> str:
    try:
        return _FORMATTER.vformat(template, (), _Blank(params))
    except (ValueError, IndexError, KeyError, AttributeError):
        return template


def text(lang: str, key: str, /, **params: Any) -> str:
    """The text of ``key`` in ``lang`` with ``{name}`` placeholders filled (a
    :class:`Message` value is rendered in the same language). Missing or empty: zh-CN's."""
    raw = _load(language(lang)).get(key) or _load(DEFAULT).get(key) or _load(DEFAULT)[MISSING]
    filled = {k: render(lang, v) if isinstance(v, Message) else v for k, v in params.items()}
    return _fill(raw, filled)


@dataclass(frozen=True)
class Message:
    """A message not yet put into words: a key and its parameters (values may be
    messages too), rendered for each reader's language by :func:`render`."""

    key: str
    params: Mapping[str, Any] = field(default_factory=dict)


def render(lang: str, message: Message) -> str:
    return text(lang, message.key, **message.params)


def render_html(template: str, lang: str) -> str:
    """A page template in ``lang``: ``{{t:key}}`` becomes the escaped text, ``{{lang}}`` the
    language tag (for ``<html lang>``)."""
    page = template.replace("{{lang}}", language(lang))
    return _PLACEHOLDER.sub(lambda m: html.escape(text(lang, m.group(1)), quote=True), page)


def catalogue_json(lang: str) -> dict[str, Any]:
    """What the pages load: ``{"lang": ..., "languages": [...], "messages": {...}}``."""
    chosen = language(lang)
    return {"lang": chosen, "languages": list(LANGUAGES), "default": DEFAULT,
            "cookie": COOKIE, "messages": messages(chosen)}  # fmt: skip


@cache
def script() -> str:
    """``i18n.js``, the pages' side of this package (served by each page's server)."""
    return resources.files("wording").joinpath("static", "i18n.js").read_text("utf-8")
