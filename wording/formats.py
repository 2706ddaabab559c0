"""Money, Beijing time and benefits, in one format everywhere.

The patterns are catalogue entries (``format.money``, ``format.datetime``, ``format.date``,
``format.period``, ``format.benefit``, ``month.N``, ``benefit.CODE``), so the pages'
``i18n.js`` applies exactly the same rules to the same catalogue.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from wording.catalogue import has, text

__all__ = ["BEIJING", "beijing", "beijing_date", "benefit", "money", "period"]

BEIJING = ZoneInfo("Asia/Shanghai")
_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


def _grouped(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def money(fen: int, lang: str) -> str:
    """``350000`` -> ``¥3,500.00`` (integer fen; never through a float)."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError("money is integer fen")
    return text(lang, "format.money", amount=_grouped(fen))


def _date_parts(day: date) -> dict[str, str]:
    return {"year": str(day.year), "month": str(day.month), "day": str(day.day),
            "mm": f"{day.month:02d}", "dd": f"{day.day:02d}"}  # fmt: skip


def beijing(at: datetime, lang: str) -> str:
    """An aware time in Beijing time: ``2026年12月4日 15:30`` / ``2026-12-04 15:30 (Beijing
    time)``."""
    if at.tzinfo is None:
        raise ValueError("a naive time has no place in Beijing time")
    local = at.astimezone(BEIJING)
    return text(lang, "format.datetime", **_date_parts(local.date()),
                hour=f"{local.hour:02d}", minute=f"{local.minute:02d}")  # fmt: skip


def beijing_date(day: date, lang: str) -> str:
    """A calendar date (already a Beijing date, as on a card): ``2026年12月4日``."""
    return text(lang, "format.date", **_date_parts(day))


def period(value: str, lang: str) -> str:
    """A ``YYYY-MM`` period: ``2026年12月`` / ``December 2026`` (anything else as it is)."""
    match = _PERIOD.match(value)
    if not match or not 1 <= int(match.group(2)) <= 12:
        return value
    month = int(match.group(2))
    return text(lang, "format.period", year=match.group(1), month=str(month),
                month_name=text(lang, f"month.{month}"))  # fmt: skip


def benefit(code: str, period_value: str, lang: str) -> str:
    """A benefit by name and period: ``养老金 2026年12月`` / ``Pension, December 2026``."""
    key = f"benefit.{code}"
    name = text(lang, key) if has(key) else text(lang, "benefit.other", code=code)
    return text(lang, "format.benefit", name=name, period=period(period_value, lang))
