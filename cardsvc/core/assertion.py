"""Client assertions (RFC 7523 ``private_key_jwt``): made by clients, checked by the issuer."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from cardsvc.core.errors import VerificationError
from cardsvc.core.jws import check_times, strict_json_object, verify_jws
from cardsvc.core.keys import VerifyingKey, b64url_decode
from cardsvc.core.signing import Signer, sign_jws

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Assertions are one-shot: a longer life only widens the replay window.
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)
_TYPS: frozenset[str | None] = frozenset({None, "JWT", "client-authentication+jwt"})


def make_client_assertion(signer: Signer, *, client_id: str, audience: str, now: datetime) -> str:
    """What a client sends as ``client_assertion`` to the token endpoint."""
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=1)).timestamp()),
        "jti": secrets.token_urlsafe(16),
    }
    return sign_jws({"typ": "JWT"}, claims, signer)


def unverified_client_id(assertion: str) -> str:
    """The ``iss`` an assertion claims, to look its key up; trusted only after verify."""
    parts = assertion.split(".") if isinstance(assertion, str) else []
    if len(parts) != 3:
        raise VerificationError("claims", "client_assertion is not a compact JWS")
    claims = strict_json_object(b64url_decode(parts[1], what="assertion"), what="assertion")
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise VerificationError("claims", "client_assertion has no iss")
    return issuer


def verify_client_assertion(
    assertion: str,
    *,
    client_id: str,
    key: VerifyingKey,
    audiences: frozenset[str],
    now: datetime,
    leeway: timedelta,
) -> Mapping[str, Any]:
    """Check an assertion signed by ``client_id``'s registered key; returns its claims.

    RFC 7523 section 3: ``iss`` and ``sub`` are the client, ``aud`` names this token
    endpoint, ``exp`` is near, ``jti`` is present (the caller makes it one-time).
    """
    # Signed by the client's own library, which may draw either s: low-S is ours only.
    verified = verify_jws(
        assertion, typ=_TYPS, key_for=lambda _header: key, max_size=4096, low_s=False
    )
    claims = verified.claims
    check_times(claims, now=now, leeway=leeway, require=("exp",))
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise VerificationError("claims", "iss and sub must both be the client_id")
    aud = claims.get("aud")
    named = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else set()
    if not named & audiences:
        raise VerificationError("audience", "aud does not name this token endpoint")
    if (
        claims["exp"] - now.timestamp()
        > MAX_ASSERTION_LIFETIME.total_seconds() + leeway.total_seconds()
    ):
        raise VerificationError("claims", "assertion lives longer than 5 minutes")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 128:
        raise VerificationError("claims", "jti must be a string of 8-128 characters")
    return claims
