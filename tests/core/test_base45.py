"""Tests for cardsvc.core.base45: RFC 9285 examples, round trips, every malformed input."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.core.base45 import b45decode, b45encode
from cardsvc.core.errors import DecodeError

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

# RFC 9285 sections 4.3 and 4.4.
RFC_EXAMPLES = [
    (b"AB", "BB8"),
    (b"Hello!!", "%69 VD92EX0"),
    (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"),
]


@pytest.mark.parametrize(("raw", "text"), RFC_EXAMPLES)
def test_rfc9285_encode(raw: bytes, text: str) -> None:
    assert b45encode(raw) == text


@pytest.mark.parametrize(("raw", "text"), RFC_EXAMPLES)
def test_rfc9285_decode(raw: bytes, text: str) -> None:
    assert b45decode(text) == raw


def test_rfc9285_decode_example() -> None:
    # RFC 9285 section 4.4 walks through decoding exactly this string.
    assert b45decode("QED8WEX0") == b"ietf!"


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("", b""),
        ("00", b"\x00"),
        ("000", b"\x00\x00"),
        ("U5", b"\xff"),  # 30 + 45*5 = 255, the largest final pair
        ("FGW", b"\xff\xff"),  # 15 + 45*16 + 2025*32 = 65535, the largest triple
        ("FGWU5", b"\xff\xff\xff"),
    ],
)
def test_boundaries(text: str, raw: bytes) -> None:
    assert b45decode(text) == raw
    assert b45encode(raw) == text


def test_every_two_byte_value_round_trips() -> None:
    # Each 16-bit value is one triple, so this covers the whole triple range once.
    data = b"".join(n.to_bytes(2) for n in range(0x10000))
    text = b45encode(data)
    assert len(text) == 3 * 0x10000
    assert b45decode(text) == data


def test_large_input_spans_chunks() -> None:
    data = os.urandom(20_001)
    assert b45decode(b45encode(data)) == data


@given(st.binary())
def test_round_trip(data: bytes) -> None:
    text = b45encode(data)
    assert set(text) <= set(ALPHABET)
    assert len(text) == 3 * (len(data) // 2) + 2 * (len(data) % 2)
    assert b45decode(text) == data


@given(st.text())
def test_random_text_gives_bytes_or_decode_error(text: str) -> None:
    try:
        data = b45decode(text)
    except DecodeError as exc:
        assert exc.format_name == "base45"
    else:
        # Base45 has one encoding per byte string, so whatever decodes re-encodes exactly.
        assert b45encode(data) == text


@given(st.text(alphabet=ALPHABET))
def test_random_alphabet_text_gives_bytes_or_decode_error(text: str) -> None:
    try:
        data = b45decode(text)
    except DecodeError as exc:
        assert exc.format_name == "base45"
    else:
        assert b45encode(data) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("GGW", "triple 'GGW' at position 0 exceeds 65535"),  # 65536
        (":::", "triple ':::' at position 0 exceeds 65535"),  # 91124, the largest triple
        ("BB8GGW", "triple 'GGW' at position 3 exceeds 65535"),
        ("V5", "final pair 'V5' exceeds 255"),  # 256
        ("::", "final pair '::' exceeds 255"),
        ("BB8::", "final pair '::' exceeds 255"),
        ("A", "length 1 is 1 modulo 3"),
        ("BB8A", "length 4 is 1 modulo 3"),
        ("bb8", "invalid character 'b' at position 0"),  # lower case is not base45
        ("BB8\n", "invalid character '\\n' at position 3"),
        ("BB=", "invalid character '=' at position 2"),
        ("BB\x00", "invalid character '\\x00' at position 2"),
        ("BB\x7f", "invalid character '\\x7f' at position 2"),
        ("BB€", "non-ASCII character at position 2"),
        ("ÿB8", "non-ASCII character at position 0"),
    ],
)
def test_malformed_input(text: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        b45decode(text)
    assert info.value.format_name == "base45"
    assert info.value.reason == reason


def test_out_of_range_triple_in_a_later_chunk_reports_its_position() -> None:
    text = "BB8" * 5000 + "GGW" + "BB8"
    with pytest.raises(DecodeError) as info:
        b45decode(text)
    assert info.value.reason == "triple 'GGW' at position 15000 exceeds 65535"


@pytest.mark.parametrize("value", [b"BB8", bytearray(b"BB8"), None, 123])
def test_non_text_input(value: object) -> None:
    with pytest.raises(DecodeError) as info:
        b45decode(value)  # type: ignore[arg-type]
    assert info.value.reason.startswith("expected text, got ")
