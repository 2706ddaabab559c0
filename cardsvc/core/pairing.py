"""The wallet's "activate at the counter" QR code: the phone's public key for a counter.

A phone that wants its e-card activated at a service counter shows a QR code carrying
its device public key (EC P-256); the clerk scans it into the counter page, the card's
chip and PIN prove the holder, and the issuer binds that key. The text is

    SSCA1:<x>.<y>

where ``x`` and ``y`` are the key's coordinates in canonical unpadded base64url (43
characters each, as in the JWK): 93 characters, QR version 6 at error correction M.
Nothing secret is in it. Both sides show :func:`fingerprint`, eight hexadecimal
characters of the key's RFC 7638 thumbprint (``3F2A-91C0``), so the clerk and the holder
can see that the counter bound the phone in the holder's hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from cardsvc.core.errors import CoreError, DecodeError
from cardsvc.core.keys import VerifyingKey, b64url_decode, canonical_b64url_decode

__all__ = ["SCHEME_PREFIX", "activation_text", "fingerprint", "parse_activation_text"]

SCHEME_PREFIX: Final = "SSCA1:"
_FORMAT: Final = "activation QR"
#: Longer input is refused before any parsing (a scanner may send a whole other code).
MAX_TEXT: Final = 200


def activation_text(key: VerifyingKey) -> str:
    """The QR text that asks a counter to activate an e-card for ``key``."""
    jwk = key.jwk()
    return f"{SCHEME_PREFIX}{jwk['x']}.{jwk['y']}"


def parse_activation_text(text: object) -> VerifyingKey:
    """The device key in an activation QR text; raises :class:`DecodeError` (a
    :class:`CoreError`) naming what is wrong, never echoing the input whole.

    Whitespace around the text is ignored (scanners add a newline); the point must be on
    the curve."""
    if not isinstance(text, str):
        raise DecodeError(_FORMAT, "not text")
    if len(text) > MAX_TEXT:
        raise DecodeError(_FORMAT, f"longer than {MAX_TEXT} characters")
    text = text.strip()
    if not text.startswith(SCHEME_PREFIX):
        raise DecodeError(_FORMAT, f"not an {SCHEME_PREFIX} code")
    body = text[len(SCHEME_PREFIX) :]
    x, dot, y = body.partition(".")
    if not dot or "." in y:
        raise DecodeError(_FORMAT, "expected two coordinates separated by '.'")
    for name, part in (("x", x), ("y", y)):
        if len(part) != 43:
            raise DecodeError(_FORMAT, f"{name} must be 43 base64url characters")
        canonical_b64url_decode(part, format_name=_FORMAT, what=name)
    try:
        return VerifyingKey.from_jwk({"kty": "EC", "crv": "P-256", "x": x, "y": y})
    except CoreError as exc:
        raise DecodeError(_FORMAT, f"not a P-256 public key ({exc.detail})") from None


def fingerprint(key: VerifyingKey | Mapping[str, object]) -> str:
    """Eight hexadecimal characters of the key's thumbprint, as ``XXXX-XXXX``."""
    verifying = key if isinstance(key, VerifyingKey) else VerifyingKey.from_jwk(key)
    digits = b64url_decode(verifying.kid, what="kid")[:4].hex().upper()
    return f"{digits[:4]}-{digits[4:]}"
