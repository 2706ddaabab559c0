"""Identity values: citizen ID numbers, region codes, card numbers and amounts in fen.

Each type is a frozen, keyword-only dataclass that checks itself when it is built, and is
created from wire text through one entry point (``parse``, or ``Fen.from_yuan``). Every
failure raises :class:`~cardsvc.core.errors.InvalidIdentityError` whose ``reason`` tells a
person what to fix, e.g. ``"check character should be X, got 8"`` or
``"must be 18 characters, got 17"``.

The types deliberately do not subclass ``str`` or ``int``: mypy then refuses a
:class:`CardNumber` where a :class:`CitizenId` is expected, and plain text where either is.
Use ``str(value)`` (or ``.value``) to get the canonical text back out.

Nothing is stripped or corrected silently. The only normalisation is letter case where the
standard is case-insensitive: a lowercase ``x`` check character becomes ``X`` and a lowercase
card number becomes uppercase.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Iterable
from dataclasses import InitVar, dataclass
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from typing import ClassVar, Final

from cardsvc.core.errors import InvalidIdentityError

__all__ = [
    "EARLIEST_BIRTH_DATE",
    "MAX_FEN",
    "CardNumber",
    "CitizenId",
    "Fen",
    "RegionCode",
    "Sex",
    "gb11643_check_character",
]

#: Birth dates before this are rejected: nobody alive holds one, so it is a typo.
EARLIEST_BIRTH_DATE: Final = date(1850, 1, 1)

#: Largest amount accepted, in fen (10 000 000 000.00 CNY). Far above any card fee or
#: balance; it exists so a corrupted or hostile value is refused before arithmetic.
MAX_FEN: Final = 10**12

# Field names reported in InvalidIdentityError.field.
_CITIZEN_ID_FIELD: Final = "citizen_id"
_REGION_CODE_FIELD: Final = "region_code"
_CARD_NUMBER_FIELD: Final = "card_number"
_AMOUNT_FIELD: Final = "amount"

# str.isdigit() also accepts full-width and other Unicode digits ("１", "٣"), which int()
# would then happily convert; only ASCII digits are valid in these identifiers.
_ASCII_DIGITS: Final = frozenset(string.digits)

# Province-level prefixes of GB/T 2260 administrative division codes. Only the prefix is
# checked: the full list of ~3000 county-level codes changes every year and old ID numbers
# keep codes that have since been abolished, so a full table would reject valid people.
_PROVINCE_PREFIXES: Final = frozenset(
    f"{n:02d}"
    for n in (
        *range(11, 16),
        *range(21, 24),
        *range(31, 38),
        *range(41, 47),
        *range(50, 55),
        *range(61, 66),
        71,
        81,
        82,
        83,  # residence permits of Taiwan residents (830000), also their social security number
    )
)
_PROVINCE_PREFIXES_TEXT: Final = "11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82 or 83"

# GB 11643-1999 (ISO 7064 MOD 11-2): weight i is 2**(17 - i) mod 11 for the first 17 digits,
# and the weighted sum mod 11 indexes this string.
_GB11643_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_GB11643_CHECK_CHARACTERS: Final = "10X98765432"
_ZERO_WEIGHTED: Final = ord("0") * sum(_GB11643_WEIGHTS)

# Birth dates in ID numbers are Chinese calendar days, so "today" is the date in China
# (UTC+8, no daylight saving), not the server's local date.
_CHINA_STANDARD_TIME: Final = timezone(timedelta(hours=8), "CST")


def _today_in_china() -> date:
    return datetime.now(_CHINA_STANDARD_TIME).date()


def _describe_char(ch: str) -> str:
    """Quote a character; add its code point when it could be mistaken for ASCII."""
    if ch.isascii() and ch.isprintable():
        return repr(ch)
    return f"{ch!r} (U+{ord(ch):04X})"


def _first_char_not_in(text: str, allowed: frozenset[str]) -> tuple[int, str] | None:
    """1-based position and character of the first character of ``text`` not allowed."""
    if allowed is _ASCII_DIGITS and text.isascii() and text.isdigit():
        return None  # the common case, without a Python-level loop (QR verify hot path)
    for index, ch in enumerate(text, start=1):
        if ch not in allowed:
            return index, ch
    return None


def _length_reason(text: str, expected: int) -> str:
    reason = f"must be {expected} characters, got {len(text)}"
    if text.strip() != text:
        reason += " (leading or trailing whitespace is not removed)"
    return reason


def _type_reason(value: object) -> str:
    return f"must be a string, got {type(value).__name__}"


class Sex(Enum):
    """Sex recorded in a citizen ID number: odd sequence numbers are male, even female."""

    MALE = "M"
    FEMALE = "F"


# --- region codes ---------------------------------------------------------------------------


def _region_code_reason(code: str) -> str | None:
    """Why 6 ASCII digits are not a region code, or ``None`` if they pass."""
    if code[:2] not in _PROVINCE_PREFIXES:
        return (
            f"region code {code} does not start with a GB/T 2260 province-level code "
            f"({code[:2]} is not {_PROVINCE_PREFIXES_TEXT})"
        )
    return None


def _validate_region_code(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidIdentityError(_REGION_CODE_FIELD, value, _type_reason(value))
    if len(value) != 6:
        raise InvalidIdentityError(_REGION_CODE_FIELD, value, _length_reason(value, 6))
    bad = _first_char_not_in(value, _ASCII_DIGITS)
    if bad is not None:
        position, ch = bad
        reason = f"character {position} must be an ASCII digit 0-9, got {_describe_char(ch)}"
        raise InvalidIdentityError(_REGION_CODE_FIELD, value, reason)
    reason_or_none = _region_code_reason(value)
    if reason_or_none is not None:
        raise InvalidIdentityError(_REGION_CODE_FIELD, value, reason_or_none)
    return value


@dataclass(frozen=True, kw_only=True)
class RegionCode:
    """A 6-digit GB/T 2260 administrative division code, e.g. ``110105``.

    Checked: exactly 6 ASCII digits starting with a province-level prefix (11-15, 21-23,
    31-37, 41-46, 50-54, 61-65, 71, 81, 82, 83). The remaining four digits are *not* looked up in
    a division table (codes are renamed and abolished over time, and old ID numbers keep
    them), so a well-formed but non-existent code passes.

    Build with :meth:`parse`; ``RegionCode(value=...)`` checks the same rules.
    """

    value: str

    def __post_init__(self) -> None:
        _validate_region_code(self.value)

    @classmethod
    def parse(cls, text: str) -> RegionCode:
        """Parse a region code, raising :class:`InvalidIdentityError` if it is malformed."""
        return cls(value=text)

    @property
    def province_prefix(self) -> str:
        """The two-digit province-level prefix, e.g. ``"11"`` for Beijing."""
        return self.value[:2]

    def __str__(self) -> str:
        return self.value


# --- citizen ID numbers ---------------------------------------------------------------------


def gb11643_check_character(first17: str) -> str:
    """Return the GB 11643-1999 check character (``0``-``9`` or ``X``) for 17 digits.

    Raises :class:`InvalidIdentityError` unless ``first17`` is exactly 17 ASCII digits.
    """
    if (
        not isinstance(first17, str)
        or len(first17) != 17
        or _first_char_not_in(first17, _ASCII_DIGITS) is not None
    ):
        raise InvalidIdentityError(
            _CITIZEN_ID_FIELD, first17, "the first 17 characters must be 17 ASCII digits"
        )
    # Bytes iterate as code points: subtracting '0' once from the weighted sum is cheaper
    # than an int() per digit (this runs for every QR token verified).
    total = sum(map(operator.mul, first17.encode("ascii"), _GB11643_WEIGHTS)) - _ZERO_WEIGHTED
    return _GB11643_CHECK_CHARACTERS[total % 11]


def _validate_citizen_id(value: object, today: date | None) -> str:
    """Check every GB 11643-1999 rule; return the canonical (uppercase ``X``) form.

    Rules are checked from the outside in (type, length, characters, then the fields, then
    the check character) so the reason names the most basic thing that is wrong.
    """
    if not isinstance(value, str):
        raise InvalidIdentityError(_CITIZEN_ID_FIELD, value, _type_reason(value))
    if len(value) != 18:
        raise InvalidIdentityError(_CITIZEN_ID_FIELD, value, _length_reason(value, 18))
    bad = _first_char_not_in(value[:17], _ASCII_DIGITS)
    if bad is not None:
        position, ch = bad
        reason = f"character {position} must be an ASCII digit 0-9, got {_describe_char(ch)}"
        raise InvalidIdentityError(_CITIZEN_ID_FIELD, value, reason)
    # The standard's check character X stands for 10; lowercase is a common keying variant.
    canonical = (value[:17] + "X") if value[17] == "x" else value
    actual_check = canonical[17]
    if actual_check not in _ASCII_DIGITS and actual_check != "X":
        reason = (
            "character 18 (the check character) must be a digit 0-9 or X, "
            f"got {_describe_char(actual_check)}"
        )
        raise InvalidIdentityError(_CITIZEN_ID_FIELD, value, reason)

    region_reason = _region_code_reason(canonical[:6])
    if region_reason is not None:
        raise InvalidIdentityError(_CITIZEN_ID_FIELD, value, region_reason)

    raw_date = canonical[6:14]
    try:
        birth = date(int(raw_date[:4]), int(raw_date[4:6]), int(raw_date[6:8]))
    except ValueError:
        reason = f"birth date {raw_date} is not a calendar date"
        raise InvalidIdentityError(_CITIZEN_ID_FIELD, value, reason) from None
    if birth < EARLIEST_BIRTH_DATE:
        reason = f"birth date {raw_date} is before {EARLIEST_BIRTH_DATE.isoformat()}"
        raise InvalidIdentityError(_CITIZEN_ID_FIELD, value, reason)
    today = _today_in_china() if today is None else today
    if birth > today:
        reason = f"birth date {raw_date} is in the future (today is {today.isoformat()})"
        raise InvalidIdentityError(_CITIZEN_ID_FIELD, value, reason)

    # The 3-digit sequence (characters 15-17) is any digits; the digit check covered it.
    expected_check = gb11643_check_character(canonical[:17])
    if actual_check != expected_check:
        reason = f"check character should be {expected_check}, got {actual_check}"
        raise InvalidIdentityError(_CITIZEN_ID_FIELD, value, reason)
    return canonical


@dataclass(frozen=True, kw_only=True, repr=False)
class CitizenId:
    """An 18-character GB 11643-1999 citizen ID number, which is also the social security number.

    Layout: 6-digit region code, 8-digit birth date ``YYYYMMDD``, 3-digit sequence (odd for
    men), check character. Checked: exactly 18 characters with nothing stripped; the first 17
    are ASCII digits; the region code has a province-level prefix (see :class:`RegionCode`,
    the full division table is not checked); the birth date is a real calendar date, not
    before :data:`EARLIEST_BIRTH_DATE` and not after ``today`` (by default today's date in
    China, UTC+8); the check character matches. A lowercase ``x`` check character is
    accepted and stored as ``X``.

    Build with :meth:`parse`. ``today`` is an init-only argument so tests and batch jobs can
    pin the date; it is not stored. ``repr()`` masks the birth date so the number does not
    leak whole into logs; ``str()`` gives the full canonical number.
    """

    value: str
    today: InitVar[date | None] = None

    def __post_init__(self, today: date | None) -> None:
        # Frozen: setting the canonical form (uppercase X) has to bypass __setattr__.
        object.__setattr__(self, "value", _validate_citizen_id(self.value, today))

    @classmethod
    def parse(cls, text: str, *, today: date | None = None) -> CitizenId:
        """Parse a citizen ID number, raising :class:`InvalidIdentityError` naming the problem.

        ``today`` bounds the birth date; it defaults to the current date in China (UTC+8).
        """
        return cls(value=text, today=today)

    @property
    def region_code(self) -> RegionCode:
        """Region where the number was first issued (characters 1-6)."""
        return RegionCode(value=self.value[:6])

    @property
    def birth_date(self) -> date:
        """Date of birth (characters 7-14)."""
        return date(int(self.value[6:10]), int(self.value[10:12]), int(self.value[12:14]))

    @property
    def sequence(self) -> str:
        """Three-digit sequence number (characters 15-17), kept as text with leading zeros."""
        return self.value[14:17]

    @property
    def sex(self) -> Sex:
        """:attr:`Sex.MALE` for an odd sequence number, :attr:`Sex.FEMALE` for an even one."""
        return Sex.MALE if int(self.value[16]) % 2 == 1 else Sex.FEMALE

    @property
    def check_character(self) -> str:
        """The check character (character 18): ``0``-``9`` or ``X``."""
        return self.value[17]

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        # A citizen ID number is sensitive personal information; reprs end up in logs and
        # tracebacks, so hide the birth date as is customary (110105********002X).
        return f"CitizenId(value={self.value[:6] + '*' * 8 + self.value[14:]!r})"


# --- card numbers ---------------------------------------------------------------------------

_CARD_NUMBER_LENGTH: Final = 9
_CARD_NUMBER_CHARACTERS: Final = frozenset(string.ascii_letters + string.digits)


def _validate_card_number(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidIdentityError(_CARD_NUMBER_FIELD, value, _type_reason(value))
    if len(value) != _CARD_NUMBER_LENGTH:
        reason = _length_reason(value, _CARD_NUMBER_LENGTH)
        raise InvalidIdentityError(_CARD_NUMBER_FIELD, value, reason)
    bad = _first_char_not_in(value, _CARD_NUMBER_CHARACTERS)
    if bad is not None:
        position, ch = bad
        reason = (
            f"character {position} must be an ASCII letter A-Z or digit 0-9, "
            f"got {_describe_char(ch)}"
        )
        raise InvalidIdentityError(_CARD_NUMBER_FIELD, value, reason)
    # Safe: every character is ASCII here, so upper() cannot change the length ("ß" -> "SS").
    return value.upper()


@dataclass(frozen=True, kw_only=True)
class CardNumber:
    """The 9-character number printed on a social security card (卡号).

    Real cards often use one letter followed by 8 digits, but the format varies by region
    and card generation, so this project accepts any 9 ASCII letters or digits. Lowercase
    letters are stored uppercase; anything else (spaces, hyphens, full-width characters) is
    rejected.

    Build with :meth:`parse`; ``CardNumber(value=...)`` checks the same rules.
    """

    value: str

    def __post_init__(self) -> None:
        # Frozen: setting the canonical (uppercase) form has to bypass __setattr__.
        object.__setattr__(self, "value", _validate_card_number(self.value))

    @classmethod
    def parse(cls, text: str) -> CardNumber:
        """Parse a card number, raising :class:`InvalidIdentityError` if it is malformed."""
        return cls(value=text)

    def __str__(self) -> str:
        return self.value


# --- money ----------------------------------------------------------------------------------

# Digits in the integer part of MAX_FEN in yuan, plus "." and 2 decimals, with room to spare.
# Bounding the length first keeps int() away from huge inputs (it raises ValueError past
# 4300 digits) and keeps the error value short.
_MAX_YUAN_TEXT_LENGTH: Final = 24
# [0-9] is a literal ASCII range, so full-width digits never match.
_YUAN: Final = re.compile(r"(?P<yuan>0|[1-9][0-9]*)(?:\.(?P<fen>[0-9]{1,2}))?")
_TOO_MANY_DECIMALS: Final = re.compile(r"[0-9]+\.(?P<decimals>[0-9]{3,})")
_LEADING_ZERO: Final = re.compile(r"0[0-9]+(?:\.[0-9]*)?")
_EXPONENT: Final = re.compile(r"[0-9]*\.?[0-9]*[eE][+-]?[0-9]+")


def _validate_fen(value: object) -> int:
    # bool is an int subclass and float is a common mistake; both would silently "work".
    if type(value) is not int:
        reason = f"must be an int number of fen, got {type(value).__name__}"
        raise InvalidIdentityError(_AMOUNT_FIELD, value, reason)
    if value < 0:
        reason = f"must not be negative, got {value} fen"
        raise InvalidIdentityError(_AMOUNT_FIELD, value, reason)
    if value > MAX_FEN:
        reason = f"must be at most {MAX_FEN} fen ({_format_yuan(MAX_FEN)} CNY), got {value} fen"
        raise InvalidIdentityError(_AMOUNT_FIELD, value, reason)
    return value


def _format_yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _yuan_text_reason(text: str) -> str:
    """Explain why ``text`` is not a yuan amount we accept."""
    if text == "":
        return "must not be empty; give an amount in yuan such as 12.34"
    if any(ch.isspace() for ch in text):
        return "must not contain whitespace"
    if text[0] in "+-":
        return "must not have a sign (amounts are never negative)"
    if _EXPONENT.fullmatch(text):
        return "must not use exponent notation; write the digits out, e.g. 1200.00"
    if "," in text:
        return "must not contain digit group separators, e.g. 1234.56 not 1,234.56"
    too_many = _TOO_MANY_DECIMALS.fullmatch(text)
    if too_many is not None:
        got = len(too_many["decimals"])
        return f"must have at most 2 decimal places (1 fen = 0.01 yuan), got {got}"
    if _LEADING_ZERO.fullmatch(text):
        return "must not have leading zeros"
    return "must be a yuan amount of ASCII digits with at most 2 decimal places, such as 12.34"


@dataclass(frozen=True, kw_only=True, order=True)
class Fen:
    """An amount of money in fen (1 CNY = 100 fen); the currency is always CNY.

    ``value`` must be a plain ``int`` (``bool`` and ``float`` are rejected) from 0 to
    :data:`MAX_FEN`. Amounts are never negative: fees, balances and limits are all
    non-negative, and a refund is a separate operation rather than a negative amount.

    Build from wire text with :meth:`from_yuan` (``"12.34"``) or from an integer with
    ``Fen(value=1234)``. ``str()`` gives ``"12.34 CNY"``: ISO 4217 code rather than ``¥``,
    which is also the yen sign. Amounts are ordered and can be added; the builtin ``sum``
    of a non-empty iterable of ``Fen`` is a ``Fen``, and :meth:`total` is the typed form that
    also handles the empty case. A sum above :data:`MAX_FEN` raises
    :class:`InvalidIdentityError`.
    """

    value: int

    #: ISO 4217 currency code of every amount.
    currency: ClassVar[str] = "CNY"

    def __post_init__(self) -> None:
        _validate_fen(self.value)

    @classmethod
    def from_yuan(cls, text: str) -> Fen:
        """Parse a decimal yuan amount such as ``"12.34"``, ``"12.3"`` or ``"12"`` exactly.

        Rejected, with a reason: more than 2 decimal places, signs, exponents, whitespace,
        digit group separators, leading zeros, non-ASCII digits, amounts above
        :data:`MAX_FEN`. No float is involved at any point.
        """
        if not isinstance(text, str):
            raise InvalidIdentityError(_AMOUNT_FIELD, text, _type_reason(text))
        if len(text) > _MAX_YUAN_TEXT_LENGTH:
            reason = f"must be at most {_MAX_YUAN_TEXT_LENGTH} characters, got {len(text)}"
            raise InvalidIdentityError(_AMOUNT_FIELD, text, reason)
        match = _YUAN.fullmatch(text)
        if match is None:
            raise InvalidIdentityError(_AMOUNT_FIELD, text, _yuan_text_reason(text))
        fen = int(match["yuan"]) * 100 + int((match["fen"] or "").ljust(2, "0"))
        try:
            return cls(value=fen)
        except InvalidIdentityError as exc:
            # Report the text the caller gave, not the intermediate integer.
            raise InvalidIdentityError(_AMOUNT_FIELD, text, exc.reason) from None

    @classmethod
    def total(cls, amounts: Iterable[Fen]) -> Fen:
        """Sum of ``amounts``; ``Fen(value=0)`` when there are none."""
        result = cls(value=0)
        for amount in amounts:
            result = result + amount
        return result

    def to_yuan_str(self) -> str:
        """The amount in yuan with exactly two decimals, e.g. ``"12.34"``, ``"0.05"``."""
        return _format_yuan(self.value)

    def __add__(self, other: Fen) -> Fen:
        if not isinstance(other, Fen):
            return NotImplemented
        return Fen(value=self.value + other.value)

    def __radd__(self, other: int) -> Fen:
        # Only so builtin sum(), which starts from the int 0, works; any other int is a
        # unit mix-up (yuan or fen?) and is refused.
        if type(other) is int and other == 0:
            return self
        return NotImplemented

    def __str__(self) -> str:
        return f"{self.to_yuan_str()} CNY"
