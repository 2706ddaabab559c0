"""Tests for cardsvc.core.identity: known vectors, one test per rule, and properties."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import cast

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cardsvc.core.errors import CoreError, InvalidIdentityError
from cardsvc.core.identity import (
    EARLIEST_BIRTH_DATE,
    MAX_FEN,
    CardNumber,
    CitizenId,
    Fen,
    RegionCode,
    Sex,
    gb11643_check_character,
)

# A fixed "today" so results do not depend on when the suite runs.
TODAY = date(2025, 6, 30)

# Written out independently of the module under test (GB/T 2260 province-level codes).
# fmt: off
PROVINCE_PREFIXES = (
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65", "71", "81", "82", "83",
)
# fmt: on

VALID_IDS = ("11010519491231002X", "440524188001010014")
BAD_CHECK_ID = "110101199003074478"
NOT_A_YUAN_AMOUNT = (
    "must be a yuan amount of ASCII digits with at most 2 decimal places, such as 12.34"
)


def reason_of(call: Callable[[], object], *, field: str | None = None) -> str:
    """Run ``call``, require InvalidIdentityError, and return its reason."""
    with pytest.raises(InvalidIdentityError) as info:
        call()
    if field is not None:
        assert info.value.field == field
    return info.value.reason


def citizen_reason(text: str, today: date = TODAY) -> str:
    return reason_of(lambda: CitizenId.parse(text, today=today), field="citizen_id")


def iso7064_mod11_2_valid(number: str) -> bool:
    """Independent oracle: ISO 7064 MOD 11-2 over all 18 characters (X = 10) gives 1."""
    values = [10 if ch == "X" else int(ch) for ch in number]
    return sum(v * pow(2, 17 - i, 11) for i, v in enumerate(values)) % 11 == 1


def with_check(first17: str) -> str:
    return first17 + gb11643_check_character(first17)


# --- CitizenId: known vectors -----------------------------------------------------------------


@pytest.mark.parametrize("text", VALID_IDS)
def test_known_valid_ids_parse_and_round_trip(text: str) -> None:
    citizen = CitizenId.parse(text, today=TODAY)
    assert str(citizen) == citizen.value == text
    assert iso7064_mod11_2_valid(text)


def test_known_valid_id_fields() -> None:
    citizen = CitizenId.parse("11010519491231002X", today=TODAY)
    assert citizen.region_code == RegionCode(value="110105")
    assert citizen.birth_date == date(1949, 12, 31)
    assert citizen.sequence == "002"
    assert citizen.sex is Sex.FEMALE
    assert citizen.check_character == "X"

    old = CitizenId.parse("440524188001010014", today=TODAY)
    assert old.region_code.value == "440524"
    assert old.birth_date == date(1880, 1, 1)
    assert old.sequence == "001"
    assert old.sex is Sex.MALE
    assert old.check_character == "4"


def test_known_bad_check_character_names_the_right_one() -> None:
    assert gb11643_check_character(BAD_CHECK_ID[:17]) == "7"
    assert citizen_reason(BAD_CHECK_ID) == "check character should be 7, got 8"
    assert CitizenId.parse(BAD_CHECK_ID[:17] + "7", today=TODAY).check_character == "7"


def test_check_character_function_vectors() -> None:
    assert gb11643_check_character("11010519491231002") == "X"
    assert gb11643_check_character("44052418800101001") == "4"


@pytest.mark.parametrize("bad", ["", "1101051949123100", "110105194912310021", "1101051949123100X"])
def test_check_character_function_rejects_non_17_digits(bad: str) -> None:
    reason = reason_of(lambda: gb11643_check_character(bad), field="citizen_id")
    assert reason == "the first 17 characters must be 17 ASCII digits"


# --- CitizenId: one test per rule -------------------------------------------------------------


def test_lowercase_x_is_accepted_and_normalised() -> None:
    lower = CitizenId.parse("11010519491231002x", today=TODAY)
    assert lower.value == "11010519491231002X"
    assert lower == CitizenId.parse("11010519491231002X", today=TODAY)
    assert hash(lower) == hash(CitizenId.parse("11010519491231002X", today=TODAY))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("11010519491231002", "must be 18 characters, got 17"),
        ("11010519491231002X0", "must be 18 characters, got 19"),
        ("", "must be 18 characters, got 0"),
        (
            " 11010519491231002X",
            "must be 18 characters, got 19 (leading or trailing whitespace is not removed)",
        ),
        (
            "11010519491231002X\n",
            "must be 18 characters, got 19 (leading or trailing whitespace is not removed)",
        ),
    ],
)
def test_length_is_exactly_18_and_nothing_is_stripped(text: str, reason: str) -> None:
    assert citizen_reason(text) == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("11010519491231A02X", "character 15 must be an ASCII digit 0-9, got 'A'"),
        ("1101051949 231002X", "character 11 must be an ASCII digit 0-9, got ' '"),
        # Full-width and Arabic-Indic digits pass str.isdigit() but are not ID digits.
        ("1101051949123１002X", "character 14 must be an ASCII digit 0-9, got '１' (U+FF11)"),
        ("١1010519491231002X", "character 1 must be an ASCII digit 0-9, got '١' (U+0661)"),
        ("X1010519491231002X", "character 1 must be an ASCII digit 0-9, got 'X'"),
    ],
)
def test_first_17_must_be_ascii_digits(text: str, reason: str) -> None:
    assert citizen_reason(text) == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "11010519491231002Y",
            "character 18 (the check character) must be a digit 0-9 or X, got 'Y'",
        ),
        (
            "11010519491231002Ｘ",
            "character 18 (the check character) must be a digit 0-9 or X, got 'Ｘ' (U+FF38)",
        ),
    ],
)
def test_check_character_must_be_digit_or_x(text: str, reason: str) -> None:
    assert citizen_reason(text) == reason


@pytest.mark.parametrize("prefix", ["00", "10", "16", "47", "55", "70", "84", "91", "99"])
def test_region_code_needs_a_province_prefix(prefix: str) -> None:
    text = with_check(f"{prefix}010519491231002")
    assert citizen_reason(text) == (
        f"region code {prefix}0105 does not start with a GB/T 2260 province-level code "
        f"({prefix} is not 11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82 or 83)"
    )


@pytest.mark.parametrize("prefix", PROVINCE_PREFIXES)
def test_every_province_prefix_is_accepted(prefix: str) -> None:
    citizen = CitizenId.parse(with_check(f"{prefix}999919800101123"), today=TODAY)
    # Only the prefix is checked: 9999 is not a real county, and that is documented.
    assert citizen.region_code.province_prefix == prefix


@pytest.mark.parametrize("raw", ["19900231", "19901301", "19900100", "20230229", "00000101"])
def test_birth_date_must_be_a_calendar_date(raw: str) -> None:
    text = with_check(f"110101{raw}123")
    assert citizen_reason(text) == f"birth date {raw} is not a calendar date"


def test_birth_date_not_before_1850() -> None:
    assert citizen_reason(with_check("11010118491231123")) == (
        "birth date 18491231 is before 1850-01-01"
    )
    assert CitizenId.parse(with_check("11010118500101123"), today=TODAY).birth_date == (
        EARLIEST_BIRTH_DATE
    )


def test_birth_date_not_in_the_future_of_injected_today() -> None:
    text = with_check("11010119900307123")
    assert citizen_reason(text, today=date(1990, 3, 6)) == (
        "birth date 19900307 is in the future (today is 1990-03-06)"
    )
    # Born today is fine.
    assert CitizenId.parse(text, today=date(1990, 3, 7)).birth_date == date(1990, 3, 7)


def test_default_today_is_used_when_none_given() -> None:
    assert reason_of(lambda: CitizenId.parse(with_check("11010129991231123"))).startswith(
        "birth date 29991231 is in the future (today is "
    )
    assert CitizenId.parse(with_check("11010120000101123")).birth_date == date(2000, 1, 1)


def test_check_character_must_match() -> None:
    assert citizen_reason("110105194912310021") == "check character should be X, got 1"


@pytest.mark.parametrize(("sequence", "sex"), [("001", Sex.MALE), ("010", Sex.FEMALE)])
def test_odd_sequence_is_male(sequence: str, sex: Sex) -> None:
    citizen = CitizenId.parse(with_check(f"11010119900307{sequence}"), today=TODAY)
    assert citizen.sex is sex
    assert citizen.sequence == sequence


@pytest.mark.parametrize("value", [None, 11010519491231002, b"11010519491231002X"])
def test_citizen_id_rejects_non_strings(value: object) -> None:
    reason = citizen_reason(cast(str, value))
    assert reason == f"must be a string, got {type(value).__name__}"


def test_constructor_checks_the_same_rules_and_is_frozen() -> None:
    with pytest.raises(InvalidIdentityError):
        CitizenId(value=BAD_CHECK_ID, today=TODAY)
    citizen = CitizenId(value="11010519491231002x", today=TODAY)
    assert citizen.value == "11010519491231002X"
    with pytest.raises(dataclasses.FrozenInstanceError):
        citizen.value = "440524188001010014"  # type: ignore[misc]


def test_repr_masks_the_birth_date() -> None:
    citizen = CitizenId.parse("11010519491231002X", today=TODAY)
    assert repr(citizen) == "CitizenId(value='110105********002X')"
    assert "19491231" not in repr(citizen)


def test_identifier_types_are_distinct_values() -> None:
    # mypy --strict already rejects these comparisons (comparison-overlap); the casts let
    # the runtime check run: the values are not text, so they never equal it.
    citizen = CitizenId.parse("11010519491231002X", today=TODAY)
    assert cast(object, citizen) != "11010519491231002X"
    assert cast(object, CardNumber.parse("A12345678")) != "A12345678"
    assert cast(object, RegionCode.parse("110105")) != "110105"


def test_error_is_a_core_error_carrying_data() -> None:
    with pytest.raises(CoreError) as info:
        CitizenId.parse(BAD_CHECK_ID, today=TODAY)
    assert isinstance(info.value, InvalidIdentityError)
    assert info.value.value == BAD_CHECK_ID
    assert str(info.value) == f"citizen_id {BAD_CHECK_ID!r}: check character should be 7, got 8"


# --- CitizenId: properties --------------------------------------------------------------------


@st.composite
def valid_first17(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(PROVINCE_PREFIXES))
    county = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    birth = draw(st.dates(min_value=EARLIEST_BIRTH_DATE, max_value=TODAY))
    sequence = draw(st.text(alphabet="0123456789", min_size=3, max_size=3))
    return f"{prefix}{county}{birth:%Y%m%d}{sequence}"


@given(valid_first17())
@example("11010519491231002")
def test_computed_check_character_parses_and_others_fail(first17: str) -> None:
    expected = gb11643_check_character(first17)
    text = first17 + expected
    assert iso7064_mod11_2_valid(text)

    citizen = CitizenId.parse(text, today=TODAY)
    assert str(citizen) == text
    assert CitizenId.parse(str(citizen), today=TODAY) == citizen
    assert CitizenId.parse(text.lower(), today=TODAY) == citizen
    assert citizen.region_code.value == first17[:6]
    assert f"{citizen.birth_date:%Y%m%d}" == first17[6:14]
    assert citizen.sequence == first17[14:]
    assert citizen.sex is (Sex.MALE if int(first17[16]) % 2 else Sex.FEMALE)
    assert citizen.check_character == expected

    for wrong in "0123456789X":
        if wrong != expected:
            assert citizen_reason(first17 + wrong) == (
                f"check character should be {expected}, got {wrong}"
            )


# Alphabets that reach the deeper checks: right length, near-miss characters.
_ID_ALPHABET = "0123456789Xx１٣ \n-"


@given(
    st.one_of(
        st.text(),
        st.text(alphabet=_ID_ALPHABET, min_size=18, max_size=18),
        valid_first17().flatmap(lambda f: st.sampled_from([f + c for c in "0123456789Xx"])),
        st.from_regex(
            r"[1-9][0-9]{5}(18|19|20|29)[0-9]{2}[01][0-9][0-3][0-9]{4}[0-9Xx]", fullmatch=True
        ),
    )
)
def test_citizen_id_parse_gives_value_or_typed_error(text: str) -> None:
    try:
        citizen = CitizenId.parse(text, today=TODAY)
    except InvalidIdentityError as exc:
        assert exc.field == "citizen_id"
        assert exc.reason
    else:
        assert iso7064_mod11_2_valid(citizen.value)
        assert citizen.value.upper() == text.upper()
        assert EARLIEST_BIRTH_DATE <= citizen.birth_date <= TODAY


# --- RegionCode -------------------------------------------------------------------------------


def test_region_code_valid() -> None:
    region = RegionCode.parse("110105")
    assert str(region) == region.value == "110105"
    assert region.province_prefix == "11"
    assert RegionCode(value="820000") == RegionCode.parse("820000")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("11010", "must be 6 characters, got 5"),
        ("110105 ", "must be 6 characters, got 7 (leading or trailing whitespace is not removed)"),
        ("11010A", "character 6 must be an ASCII digit 0-9, got 'A'"),
        ("11010５", "character 6 must be an ASCII digit 0-9, got '５' (U+FF15)"),
        (
            "990105",
            "region code 990105 does not start with a GB/T 2260 province-level code "
            "(99 is not 11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82 or 83)",
        ),
    ],
)
def test_region_code_rules(text: str, reason: str) -> None:
    assert reason_of(lambda: RegionCode.parse(text), field="region_code") == reason


def test_region_code_rejects_non_strings() -> None:
    reason = reason_of(lambda: RegionCode.parse(cast(str, 110105)), field="region_code")
    assert reason == "must be a string, got int"


@given(st.one_of(st.text(), st.text(alphabet="0123456789１", min_size=6, max_size=6)))
def test_region_code_parse_gives_value_or_typed_error(text: str) -> None:
    try:
        region = RegionCode.parse(text)
    except InvalidIdentityError as exc:
        assert exc.field == "region_code"
    else:
        assert region.value == text
        assert region.province_prefix in PROVINCE_PREFIXES


# --- CardNumber -------------------------------------------------------------------------------


def test_card_number_valid_and_normalised() -> None:
    card = CardNumber.parse("A12345678")
    assert str(card) == card.value == "A12345678"
    assert CardNumber.parse("a12345678") == card
    assert CardNumber.parse("123456789").value == "123456789"
    assert CardNumber(value="abcdefghi").value == "ABCDEFGHI"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("A1234567", "must be 9 characters, got 8"),
        ("A123456789", "must be 9 characters, got 10"),
        ("A1234567 ", "character 9 must be an ASCII letter A-Z or digit 0-9, got ' '"),
        (
            " A12345678",
            "must be 9 characters, got 10 (leading or trailing whitespace is not removed)",
        ),
        ("A1234-678", "character 6 must be an ASCII letter A-Z or digit 0-9, got '-'"),
        ("Ａ12345678", "character 1 must be an ASCII letter A-Z or digit 0-9, got 'Ａ' (U+FF21)"),
        # "ß".upper() is "SS": normalising before checking would change the length.
        ("ß12345678", "character 1 must be an ASCII letter A-Z or digit 0-9, got 'ß' (U+00DF)"),
    ],
)
def test_card_number_rules(text: str, reason: str) -> None:
    assert reason_of(lambda: CardNumber.parse(text), field="card_number") == reason


def test_card_number_rejects_non_strings() -> None:
    reason = reason_of(lambda: CardNumber.parse(cast(str, None)), field="card_number")
    assert reason == "must be a string, got NoneType"


@given(
    st.one_of(
        st.text(),
        st.text(alphabet="AZaz09-Ａß ", min_size=9, max_size=9),
    )
)
def test_card_number_parse_gives_value_or_typed_error(text: str) -> None:
    try:
        card = CardNumber.parse(text)
    except InvalidIdentityError as exc:
        assert exc.field == "card_number"
    else:
        assert card.value == text.upper()
        assert len(card.value) == 9
        assert card.value.isascii() and card.value.isalnum() and not card.value.islower()


# --- Fen --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("12.34", 1234),
        ("12.3", 1230),
        ("12", 1200),
        ("0", 0),
        ("0.05", 5),
        ("0.00", 0),
        ("10000000000.00", MAX_FEN),
    ],
)
def test_fen_from_yuan(text: str, fen: int) -> None:
    assert Fen.from_yuan(text) == Fen(value=fen)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "must not be empty; give an amount in yuan such as 12.34"),
        ("12.345", "must have at most 2 decimal places (1 fen = 0.01 yuan), got 3"),
        ("1e3", "must not use exponent notation; write the digits out, e.g. 1200.00"),
        ("1.5E+2", "must not use exponent notation; write the digits out, e.g. 1200.00"),
        ("-1.00", "must not have a sign (amounts are never negative)"),
        ("+1.00", "must not have a sign (amounts are never negative)"),
        (" 1.00", "must not contain whitespace"),
        ("1.00\n", "must not contain whitespace"),
        ("1,000.00", "must not contain digit group separators, e.g. 1234.56 not 1,234.56"),
        ("012.34", "must not have leading zeros"),
        ("12.", NOT_A_YUAN_AMOUNT),
        (".5", NOT_A_YUAN_AMOUNT),
        ("１２.34", NOT_A_YUAN_AMOUNT),
        ("NaN", NOT_A_YUAN_AMOUNT),
        ("¥12.34", NOT_A_YUAN_AMOUNT),
        (
            "10000000000.01",
            "must be at most 1000000000000 fen (10000000000.00 CNY), got 1000000000001 fen",
        ),
        ("1" * 25, "must be at most 24 characters, got 25"),
        ("9" * 5000, "must be at most 24 characters, got 5000"),
    ],
)
def test_fen_from_yuan_rules(text: str, reason: str) -> None:
    with pytest.raises(InvalidIdentityError) as info:
        Fen.from_yuan(text)
    assert info.value.field == "amount"
    assert info.value.value == text
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "must be an int number of fen, got bool"),
        (12.0, "must be an int number of fen, got float"),
        (Decimal(12), "must be an int number of fen, got Decimal"),
        ("12", "must be an int number of fen, got str"),
        (-1, "must not be negative, got -1 fen"),
        (
            MAX_FEN + 1,
            "must be at most 1000000000000 fen (10000000000.00 CNY), got 1000000000001 fen",
        ),
    ],
)
def test_fen_value_rules(value: object, reason: str) -> None:
    assert reason_of(lambda: Fen(value=cast(int, value)), field="amount") == reason


def test_fen_from_yuan_rejects_non_strings() -> None:
    reason = reason_of(lambda: Fen.from_yuan(cast(str, 12.34)), field="amount")
    assert reason == "must be a string, got float"


def test_fen_formatting() -> None:
    assert str(Fen(value=1234)) == "12.34 CNY"
    assert Fen(value=5).to_yuan_str() == "0.05"
    assert Fen(value=0).to_yuan_str() == "0.00"
    assert Fen(value=MAX_FEN).to_yuan_str() == "10000000000.00"
    assert Fen.currency == "CNY"


def test_fen_ordering_and_addition() -> None:
    one, two = Fen(value=1), Fen(value=2)
    assert one < two <= two and two > one
    assert sorted([two, one]) == [one, two]
    assert one + two == Fen(value=3)
    total = sum([one, two, Fen(value=97)])
    assert isinstance(total, Fen) and total == Fen(value=100)
    assert Fen.total([one, two]) == Fen(value=3)
    assert Fen.total([]) == Fen(value=0)


def test_fen_refuses_mixing_with_int() -> None:
    one = Fen(value=1)
    with pytest.raises(TypeError):
        _ = one + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        # mypy allows this (sum() needs __radd__ to take int); it fails at run time.
        _ = 1 + one
    with pytest.raises(TypeError):
        _ = one < 2  # type: ignore[operator]
    assert cast(object, one) != 1


def test_fen_sum_above_maximum_is_refused() -> None:
    reason = reason_of(lambda: Fen(value=MAX_FEN) + Fen(value=1), field="amount")
    assert reason.startswith("must be at most 1000000000000 fen")


@given(st.integers(min_value=0, max_value=MAX_FEN))
@example(0)
@example(MAX_FEN)
def test_fen_format_parse_round_trip(fen: int) -> None:
    amount = Fen(value=fen)
    text = amount.to_yuan_str()
    assert Fen.from_yuan(text) == amount
    assert str(amount) == f"{text} CNY"
    assert Decimal(text) * 100 == fen


@given(st.from_regex(r"(0|[1-9][0-9]{0,9})\.[0-9]{2}", fullmatch=True))
def test_fen_parse_format_round_trip(text: str) -> None:
    assert Fen.from_yuan(text).to_yuan_str() == text


@given(
    st.one_of(
        st.text(),
        st.from_regex(
            r"[-+ ]?[0-9０-９]{0,14}([.,][0-9]{0,4})?([eE][-+]?[0-9]{1,3})?", fullmatch=True
        ),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
    )
)
def test_fen_from_yuan_gives_value_or_typed_error(text: str) -> None:
    try:
        amount = Fen.from_yuan(text)
    except InvalidIdentityError as exc:
        assert exc.field == "amount"
        assert exc.value == text
    else:
        # Exact, compared against an independent decimal parse.
        assert Decimal(text) * 100 == amount.value
        assert 0 <= amount.value <= MAX_FEN


@given(
    st.integers(min_value=0, max_value=MAX_FEN // 2),
    st.integers(min_value=0, max_value=MAX_FEN // 2),
)
def test_fen_addition_matches_int_addition(a: int, b: int) -> None:
    assert Fen(value=a) + Fen(value=b) == Fen(value=a + b)
    assert (Fen(value=a) < Fen(value=b)) == (a < b)


def test_future_check_uses_calendar_days() -> None:
    born = TODAY + timedelta(days=1)
    text = with_check(f"110101{born:%Y%m%d}123")
    assert (
        citizen_reason(text) == f"birth date {born:%Y%m%d} is in the future (today is 2025-06-30)"
    )
