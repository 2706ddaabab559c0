"""The receipt verification code: derived from the signed record, read forgivingly, and
its parser answers any text with a code or a DecodeError, never anything else."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.core.errors import DecodeError
from cardsvc.core.receiptcode import (
    RECEIPT_CODE_LENGTH,
    format_receipt_code,
    parse_receipt_code,
    receipt_code,
)
from cardsvc.core.signing import LocalSigner
from cardsvc.core.transaction import SignedRecord

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _record(data: bytes = b"\xa0") -> SignedRecord:
    terminal = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    return SignedRecord.sign(nonce=secrets.token_bytes(16), data=data, counter=7,
                             card_signature=secrets.token_bytes(64), terminal=terminal)  # fmt: skip


def test_the_code_is_twelve_crockford_characters_of_the_record() -> None:
    record = _record()
    code = receipt_code(record)
    assert len(code) == RECEIPT_CODE_LENGTH and set(code) <= set(_ALPHABET)
    # The same record bytes give the same code (the counter and the issuer agree)...
    again = SignedRecord.from_json(record.to_json())
    assert receipt_code(again) == code
    # ...and any other signature another one.
    assert receipt_code(_record()) != code


def test_it_reads_as_people_type_it() -> None:
    code = receipt_code(_record())
    printed = format_receipt_code(code)
    assert printed.count("-") == 2 and printed.replace("-", "") == code
    assert parse_receipt_code(printed) == code
    assert parse_receipt_code(f"  {printed.lower()} ") == code
    assert parse_receipt_code("O0IL-1111-0000") == "001111110000"


@pytest.mark.parametrize("text", ["", "ABC", "0000-0000-000U", "0000-0000-00000",
                                  "0000 0000 000ı", "0000-0000-00\x00", "0" * 41])  # fmt: skip
def test_what_is_not_a_code(text: str) -> None:
    with pytest.raises(DecodeError) as caught:
        parse_receipt_code(text)
    assert text.strip() == "" or text not in str(caught.value)


@given(st.text(max_size=60))
def test_any_text_is_a_code_or_a_decode_error(text: str) -> None:
    try:
        code = parse_receipt_code(text)
    except DecodeError:
        return
    assert len(code) == RECEIPT_CODE_LENGTH and set(code) <= set(_ALPHABET)
    assert parse_receipt_code(format_receipt_code(code)) == code


@given(st.text(alphabet=_ALPHABET, min_size=12, max_size=12))
def test_every_canonical_code_reads_back(code: str) -> None:
    assert parse_receipt_code(format_receipt_code(code)) == code
    assert parse_receipt_code(code.lower()) == code
