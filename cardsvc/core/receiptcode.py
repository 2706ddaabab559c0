"""The short verification code printed on a counter receipt.

A counter prints the code the moment the card and the terminal have signed, online or
offline (before any sync): it is derived from the signed transaction record alone, so
the counter and the issuer, holding the same record bytes, compute the same code. The
holder or an auditor types it at the issuer (``GET /v1/receipts/{code}``) and reads back
what the receipt says: kind, amount, date and the counter's name.

The code is the first 60 bits of ``SHA-256(context || nonce || counter || card signature
|| data || terminal signature)`` in Crockford base32: 12 characters, printed in groups
of four (``7K2M-9QXA-E4D1``). The terminal's ECDSA signature is random, so a code cannot
be worked out from the transaction's contents; 2^60 codes leave nothing to guess at the
issuer's rate limits. Reading is forgiving as Crockford's is: case, spaces and hyphens
do not matter, ``O`` reads as ``0`` and ``I``/``L`` as ``1``.
"""

from __future__ import annotations

import hashlib

from cardsvc.core.errors import DecodeError
from cardsvc.core.transaction import SignedRecord

__all__ = ["RECEIPT_CODE_LENGTH", "format_receipt_code", "parse_receipt_code", "receipt_code"]

RECEIPT_CODE_LENGTH = 12
_CONTEXT = b"cardsvc-receipt-code-v1\x00"
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READ = {**{c: c for c in _ALPHABET}, "O": "0", "I": "1", "L": "1"}
#: The longest text worth reading (a code with separators and spaces around it).
MAX_TEXT = 40


def receipt_code(record: SignedRecord) -> str:
    """The 12-character code of ``record`` (no separators)."""
    digest = hashlib.sha256(
        _CONTEXT
        + record.nonce
        + record.counter.to_bytes(4, "big")
        + record.card_signature
        + len(record.data).to_bytes(2, "big")
        + record.data
        + record.terminal_signature
    ).digest()
    bits = int.from_bytes(digest[:8], "big") >> 4  # the first 60 bits
    return "".join(
        _ALPHABET[(bits >> (5 * i)) & 31] for i in reversed(range(RECEIPT_CODE_LENGTH))
    )


def format_receipt_code(code: str) -> str:
    """``7K2M9QXAE4D1`` -> ``7K2M-9QXA-E4D1`` (as printed)."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def parse_receipt_code(text: str) -> str:
    """A code as typed -> its canonical 12 characters; DecodeError for anything else
    (the input is never echoed: it names neither the text nor its characters)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise DecodeError("receipt code", f"a code is {RECEIPT_CODE_LENGTH} characters")
    out = []
    for ch in text:
        if ch in " -\t":
            continue
        read = _READ.get(ch.upper()) if ch.isascii() else None
        if read is None:
            raise DecodeError("receipt code", "only letters and digits of the code")
        out.append(read)
    if len(out) != RECEIPT_CODE_LENGTH:
        raise DecodeError("receipt code", f"a code is {RECEIPT_CODE_LENGTH} characters")
    return "".join(out)
