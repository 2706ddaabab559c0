"""Base45 (RFC 9285), the text form of COSE tokens in QR codes.

Base45 uses only the 45 characters of the QR alphanumeric mode, so a QR code carries it at
5.5 bits per character. Every two bytes become three characters ``c d e`` with
``c + 45*d + 2025*e`` equal to the big-endian 16-bit value; a trailing single byte becomes
two characters.

Decoding runs on every scanned token, so it does its arithmetic in a few big-integer
operations per chunk of input instead of a Python loop per character (about 5 us for a
500-character token, against about 45 us for a plain loop).
"""

from __future__ import annotations

import functools
import sys
from array import array

from cardsvc.core.errors import DecodeError

__all__ = ["b45decode", "b45encode"]

_FORMAT = "base45"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_INVALID = 0xFF
# Character code -> digit value, 0xFF for anything outside the alphabet.
_DECODE_TABLE = bytes(
    _ALPHABET.index(chr(i)) if chr(i) in _ALPHABET else _INVALID for i in range(256)
)
_ALPHABET_BYTES = _ALPHABET.encode("ascii")

# Decoding reads a chunk of digit values as one big-endian integer, so triple i is the
# 24-bit lane c*2**16 + d*2**8 + e. Masks pick one digit out of every lane at once, and
# c + 45*d + 2025*e (at most 91124 < 2**24) is then computed for all lanes together without
# a carry crossing lanes. The top byte of a lane is non-zero exactly when the value exceeds
# 65535; the other two are the decoded bytes.

# 4608 characters: more than a version 40 QR code holds (4296), and a bound on the
# temporary memory whatever the input size.
_CHUNK_TRIPLES = 1536
_CHUNK = 3 * _CHUNK_TRIPLES
_LOW_DIGIT = int.from_bytes(b"\x00\x00\xff" * _CHUNK_TRIPLES)
_OVERFLOW = int.from_bytes(b"\xff\x00\x00" * _CHUNK_TRIPLES)


def b45encode(data: bytes) -> str:
    """Encode bytes as base45 text (RFC 9285 section 4)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    whole = len(data) - len(data) % 2
    pairs = array("H", data[:whole])
    if sys.byteorder == "little":
        pairs.byteswap()  # the pairs are big-endian 16-bit values
    text = b"".join(map(_triples().__getitem__, pairs))
    if whole != len(data):
        d, c = divmod(data[-1], 45)
        text += bytes((_ALPHABET_BYTES[c], _ALPHABET_BYTES[d]))
    return text.decode("ascii")


@functools.cache
def _triples() -> tuple[bytes, ...]:
    """The three characters of every 16-bit value, built on the first encode (~3 MB).

    The issuer mints a token per QR refresh and hundreds per offline batch; a table turns
    ~70 us of per-pair arithmetic for a 280-character token into one join. Verifiers,
    which only decode, never build it.
    """
    a = _ALPHABET_BYTES
    return tuple(bytes((a[n % 45], a[n // 45 % 45], a[n // 2025])) for n in range(0x10000))


def b45decode(text: str) -> bytes:
    """Decode base45 text (RFC 9285 section 4.2).

    Raises :class:`~cardsvc.core.errors.DecodeError` for a character outside the base45
    alphabet (lower case included), a length of 1 modulo 3, or a group whose value does not
    fit (a triple above 65535, a final pair above 255).
    """
    if not isinstance(text, str):
        raise DecodeError(_FORMAT, f"expected text, got {type(text).__name__}")
    try:
        digits = text.encode("ascii").translate(_DECODE_TABLE)
    except UnicodeEncodeError as exc:
        raise DecodeError(_FORMAT, f"non-ASCII character at position {exc.start}") from None
    bad = digits.find(_INVALID)
    if bad >= 0:
        raise DecodeError(_FORMAT, f"invalid character {text[bad]!r} at position {bad}")
    triples, rest = divmod(len(digits), 3)
    if rest == 1:
        raise DecodeError(_FORMAT, f"length {len(text)} is 1 modulo 3")

    out = bytearray(2 * triples + rest // 2)
    end = 3 * triples
    start = 0
    while start < end:  # once, for anything that fits a QR code
        stop = min(start + _CHUNK, end)
        lanes = int.from_bytes(digits[start:stop])
        c, d, e = (lanes >> 16) & _LOW_DIGIT, (lanes >> 8) & _LOW_DIGIT, lanes & _LOW_DIGIT
        values = c + 45 * d + 2025 * e
        packed = values.to_bytes(stop - start)
        if values & _OVERFLOW:
            pos = start + 3 * next(i for i, byte in enumerate(packed[::3]) if byte)
            triple = text[pos : pos + 3]
            raise DecodeError(_FORMAT, f"triple {triple!r} at position {pos} exceeds 65535")
        first, last = 2 * start // 3, 2 * stop // 3
        out[first:last:2] = packed[1::3]
        out[first + 1 : last : 2] = packed[2::3]
        start = stop
    if rest:
        value = digits[end] + 45 * digits[end + 1]
        if value > 0xFF:
            raise DecodeError(_FORMAT, f"final pair {text[end:]!r} exceeds 255")
        out[-1] = value
    return bytes(out)
