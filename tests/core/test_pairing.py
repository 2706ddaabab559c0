"""The wallet's counter-activation QR text (cardsvc.core.pairing)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.core.errors import DecodeError
from cardsvc.core.keys import VerifyingKey, public_jwk
from cardsvc.core.pairing import (
    SCHEME_PREFIX,
    activation_text,
    fingerprint,
    parse_activation_text,
)


def _key() -> VerifyingKey:
    return VerifyingKey(public_key=ec.generate_private_key(ec.SECP256R1()).public_key())


def test_a_key_round_trips_with_the_same_thumbprint_and_fingerprint() -> None:
    key = _key()
    text = activation_text(key)
    assert text.startswith(SCHEME_PREFIX) and len(text) == 93
    parsed = parse_activation_text(f"  {text}\r\n")  # a scanner's line end is ignored
    assert parsed.kid == key.kid
    assert fingerprint(parsed) == fingerprint(public_jwk(key.public_key))
    assert len(fingerprint(parsed)) == 9 and fingerprint(parsed)[4] == "-"


def test_a_known_key_has_a_fixed_fingerprint() -> None:
    # RFC 7517's example P-256 key (appendix A.1).
    jwk = {"kty": "EC", "crv": "P-256",
           "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
           "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}  # fmt: skip
    key = VerifyingKey.from_jwk(jwk)
    assert parse_activation_text(activation_text(key)).kid == key.kid
    assert fingerprint(jwk) == fingerprint(key)
    assert fingerprint(key) == "727F-88FD"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not an SSCA1"),
        ("SSC1:NCFOXN%TS3DH", "not an SSCA1"),
        ("SSCA1:", "two coordinates"),
        ("SSCA1:" + "A" * 43, "two coordinates"),
        ("SSCA1:" + "A" * 43 + "." + "A" * 42, "43 base64url"),
        ("SSCA1:" + "A" * 43 + "." + "A" * 43 + ".x", "two coordinates"),
        ("SSCA1:" + "A" * 42 + "+." + "A" * 43, "base64url"),
        ("SSCA1:" + "A" * 43 + "." + "A" * 43, "P-256"),  # (0, 0) is not on the curve
        ("SSCA1:" + "x" * 300, "longer than"),
    ],
)
def test_bad_texts_are_refused_by_name(text: str, why: str) -> None:
    with pytest.raises(DecodeError, match=why) as info:
        parse_activation_text(text)
    assert "x" * 60 not in str(info.value)


def test_a_non_string_is_refused() -> None:
    with pytest.raises(DecodeError):
        parse_activation_text(b"SSCA1:")


@given(st.text(max_size=250))
def test_any_text_parses_or_is_a_decode_error(text: str) -> None:
    try:
        key = parse_activation_text(text)
    except DecodeError:
        return
    assert activation_text(key) == text.strip()


@given(st.binary(min_size=64, max_size=64))
def test_any_coordinates_parse_or_are_a_decode_error(raw: bytes) -> None:
    from cardsvc.core.keys import b64url_encode

    text = f"{SCHEME_PREFIX}{b64url_encode(raw[:32])}.{b64url_encode(raw[32:])}"
    try:
        key = parse_activation_text(text)
    except DecodeError:
        return
    assert activation_text(key) == text
