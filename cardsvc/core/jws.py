"""Verification of compact JWS documents (RFC 7515) under RFC 8725 rules.

Everything a header could be used to subvert is decided here: the key comes from the
caller's trust list by ``kid`` and purpose, the algorithm is the key's own (ES256, or
SM2SM3 for an SM2 key: the header's ``alg`` must only agree), ``crit`` is refused, each
part must be canonical unpadded base64url, JSON with duplicate members is refused, and
time claims are checked against an explicit ``now`` and ``leeway``.

The signature is checked by pyjwt's ES256 algorithm on the parts parsed here, not
through pyjwt's ``decode``: pyjwt 2.15 re-validates every character of the compact form in
a Python loop, ~80 us on a card document and tens of milliseconds on a verifier bundle,
after this module has already parsed the same parts more strictly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jwt.algorithms import ECAlgorithm

from cardsvc.core.errors import DecodeError, InputTooLargeError, VerificationError, shown
from cardsvc.core.keys import ES256, VerifyingKey, canonical_b64url_decode
from cardsvc.core.signing import is_high_s

#: Default upper bound on a compact JWS, checked before any decoding.
MAX_JWS_SIZE = 64 * 1024

_ES256 = ECAlgorithm(ECAlgorithm.SHA256)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DecodeError("json", f"duplicate member {key!r}")
        obj[key] = value
    return obj


def strict_json_object(data: bytes | str, *, what: str) -> dict[str, Any]:
    """Parse a JSON object, refusing duplicate members, NaN and non-object roots."""

    def _no_constants(name: str) -> None:
        raise DecodeError(what, f"non-standard JSON constant {name}")

    try:
        value = json.loads(data, object_pairs_hook=_reject_duplicates, parse_constant=_no_constants)
    except DecodeError as exc:
        raise DecodeError(what, exc.reason) from None
    except (ValueError, RecursionError) as exc:
        raise DecodeError(what, f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DecodeError(what, "must be a JSON object")
    return value


#: 9999-12-31T23:59:59Z: later NumericDates cannot be datetimes.
MAX_NUMERIC_DATE = 253402300799


def _numeric_date(claims: Mapping[str, Any], name: str) -> int | None:
    """The claim ``name`` as whole seconds, ``None`` if absent; a mistyped one is refused."""
    if name not in claims:
        return None
    value = claims[name]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_NUMERIC_DATE
    ):
        raise VerificationError("claims", f"{name} must be a NumericDate")
    return int(value)


def check_times(
    claims: Mapping[str, Any],
    *,
    now: datetime,
    leeway: timedelta,
    require: tuple[str, ...] = ("iat", "exp"),
) -> None:
    """Check ``iat``/``nbf``/``exp`` against ``now`` with an explicit leeway."""
    for name in require:
        if name not in claims:
            raise VerificationError("claims", f"missing required claim {name}")
    t = now.timestamp()
    slack = leeway.total_seconds()
    iat = _numeric_date(claims, "iat")
    nbf = _numeric_date(claims, "nbf")
    exp = _numeric_date(claims, "exp")
    if iat is not None and exp is not None and exp < iat:
        raise VerificationError("claims", "exp is before iat")
    if iat is not None and iat > t + slack:
        raise VerificationError("issued-in-future", f"iat {iat} is after now {int(t)}")
    if nbf is not None and nbf > t + slack:
        raise VerificationError("not-yet-valid", f"nbf {nbf} is after now {int(t)}")
    if exp is not None and exp <= t - slack:
        raise VerificationError("expired", f"exp {exp} is not after now {int(t)}")


@dataclass(frozen=True, kw_only=True)
class VerifiedJws:
    """A JWS whose signature verified, with its parsed header and claims."""

    header: dict[str, Any]
    claims: dict[str, Any]
    key: VerifyingKey


def verify_jws(
    token: str,
    *,
    typ: str | frozenset[str | None],
    key_for: Callable[[Mapping[str, Any]], VerifyingKey],
    max_size: int = MAX_JWS_SIZE,
    low_s: bool = True,
) -> VerifiedJws:
    """Verify a compact JWS signature and return its header and claims.

    ``typ`` is the one header ``typ`` accepted, or a set of them (``None``: absent).
    ``key_for`` receives the parsed header and must return the key to use or raise a
    :class:`VerificationError` (unknown ``kid``, wrong purpose). Time claims are *not*
    checked here; call :func:`check_times` with the caller's clock.

    ``low_s`` (the default) refuses a signature whose ``s`` is above n/2: our signers
    write only the low form (:func:`cardsvc.core.signing.low_s`), so each document has one
    encoding. Pass ``False`` only for a JWS signed by someone else's library (a client
    assertion), which may draw either form.
    """
    if not isinstance(token, str):
        raise DecodeError("jws", "token must be text")
    if len(token) > max_size:
        raise InputTooLargeError("jws", len(token), max_size)
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii():
        raise DecodeError("jws", "not a compact JWS (three base64url parts)")
    header_bytes = canonical_b64url_decode(parts[0], format_name="jws", what="header")
    header = strict_json_object(header_bytes, what="jws header")
    if "crit" in header:
        raise VerificationError("crit", "critical header parameters are not supported")
    if "b64" in header:
        raise DecodeError("jws", "the b64 header (unencoded payload) is not supported")
    if not isinstance(header.get("kid", ""), str):
        raise DecodeError("jws", "kid must be a string (RFC 7515 section 4.1.4)")
    allowed = typ if isinstance(typ, frozenset) else frozenset({typ})
    header_typ = header.get("typ")
    if not isinstance(header_typ, str | None) or header_typ not in allowed:
        wanted = " or ".join(sorted(repr(t) for t in allowed))
        raise VerificationError("typ", f"typ must be {wanted}, got {shown(header.get('typ'))}")
    for name in ("jku", "jwk", "x5u", "x5c"):
        if name in header:
            # Keys come only from the trust list; a header must not be able to name one.
            raise VerificationError("key-unknown", f"header parameter {name} is not accepted")
    key = key_for(header)
    if header.get("alg") != key.alg:
        raise VerificationError(
            "algorithm", f"header alg {shown(header.get('alg'))} is not the key's {key.alg}"
        )
    signature = canonical_b64url_decode(parts[2], format_name="jws", what="signature")
    payload = canonical_b64url_decode(parts[1], format_name="jws", what="payload")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    if key.alg == ES256:
        if low_s and is_high_s(signature):
            raise VerificationError(
                "signature", "s is above n/2: only the low-S form is accepted"
            )
        if not _ES256.verify(signing_input, key.p256, signature):
            raise VerificationError("signature", "signature does not verify")
    else:
        key.verify_raw(signature, signing_input)
    claims = strict_json_object(payload, what="jws payload")
    return VerifiedJws(header=header, claims=claims, key=key)
