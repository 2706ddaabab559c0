"""What people read, in their language: one message catalogue per language, and the
formats of money, Beijing time and benefits.

Simplified Chinese (``zh-CN``) is the default; English (``en``) is the other language. The
catalogues are gettext ``.po`` files in ``wording/locales/`` (``zh_CN.po``, ``en.po``),
keyed by stable message ids such as ``counter.problem.card-removed.title`` (never English
sentences as ids, so a changed English text orphans nothing). They are read with Babel at
run time, so there is no compiled file to go stale. The pages get the same catalogue as
JSON (:func:`catalogue_json`) and format with ``wording/static/i18n.js``, which applies
the same ``format.*`` patterns as :mod:`wording.formats`.

A missing key, an empty text or an unknown language falls back to zh-CN; a key missing
in zh-CN too reads as ``common.text-missing`` (never blank, never the key name).

This package imports nothing of ``cardsvc`` or ``reader_agent`` (an import-linter
contract), so both the issuer and the counter agent use it.
"""

from __future__ import annotations

from wording.catalogue import (
    COOKIE,
    DEFAULT,
    LANGUAGES,
    Message,
    catalogue_json,
    has,
    keys,
    language,
    messages,
    negotiate,
    render,
    render_html,
    script,
    text,
)
from wording.formats import beijing, beijing_date, benefit, money, period

__all__ = [
    "COOKIE",
    "DEFAULT",
    "LANGUAGES",
    "Message",
    "beijing",
    "beijing_date",
    "benefit",
    "catalogue_json",
    "has",
    "keys",
    "language",
    "messages",
    "money",
    "negotiate",
    "period",
    "render",
    "render_html",
    "script",
    "text",
]
