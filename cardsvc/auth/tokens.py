"""Access tokens: short-lived JWTs (RFC 9068 profile) signed by the access-token key.

Verification is local (signature + claims), so checking a token costs no database
round trip on the hot path.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cardsvc.audit.events import Actor, InvalidActorError
from cardsvc.auth.scopes import Scope, allowed_scopes
from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.jws import check_times, verify_jws
from cardsvc.core.keys import KeyPurpose, VerifyingKey
from cardsvc.core.signing import sign_jws
from cardsvc.errors import CardsvcError, Forbidden, Unauthenticated
from cardsvc.keystore.service import KeyService

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type, not a secret
MAX_ACCESS_TOKEN_SIZE = 4096


class AuthenticationError(Unauthenticated, CardsvcError):
    """No valid credentials (the API answers with a WWW-Authenticate challenge)."""

    code = "unauthenticated"


class ForbiddenError(Forbidden, CardsvcError):
    """Valid credentials without the scope the endpoint needs."""

    code = "forbidden"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this needs the scope {scope}")
        self.scope = scope


@dataclass(frozen=True, kw_only=True)
class Principal:
    """The authenticated caller: an operator (with a role) or a machine client."""

    subject: str  # client_id
    kind: str  # "operator", "terminal" or "partner"
    #: The subject as the audit log records it, checked once here, where it is
    #: authenticated (an :class:`InvalidActorError` for a subject that cannot be one).
    actor: Actor = field(init=False, compare=False)
    scopes: frozenset[str]
    token_id: str = ""
    #: A partner's allowed verify purposes (``None``: not restricted, e.g. a terminal).
    purposes: frozenset[str] | None = None
    #: A partner's verify requests per minute (``None``: not limited).
    rate_limit: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "actor", Actor(self.subject))

    def require(self, scope: Scope) -> None:
        if scope.value not in self.scopes:
            raise ForbiddenError(scope.value)


def issue_access_token(
    keys: KeyService,
    *,
    issuer: str,
    subject: str,
    kind: str,
    scopes: frozenset[str],
    now: datetime,
    lifetime: timedelta = timedelta(minutes=10),
    purposes: frozenset[str] | None = None,
    rate_limit: int | None = None,
) -> str:
    """Sign an access token for ``subject`` with exactly ``scopes`` (and, for a partner,
    its allowed ``purposes`` and ``rate_limit``)."""
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": issuer,
        "sub": subject,
        "client_id": subject,
        "kind": kind,
        "scope": " ".join(sorted(scopes)),
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "jti": secrets.token_urlsafe(12),
    }
    if purposes is not None:
        claims["purposes"] = " ".join(sorted(purposes))
    if rate_limit is not None:
        claims["rate_limit"] = rate_limit
    signer = keys.signer(KeyPurpose.ACCESS_TOKEN, now=now)
    return sign_jws({"typ": ACCESS_TOKEN_TYP}, claims, signer)


class VerifiedTokenCache:
    """Access tokens already verified, until they expire: saves an ECDSA verify per request.

    Keyed by the exact token text and filled only after a successful verification; every
    hit re-checks ``exp``. Bounded: when full, the older half is dropped. A token stays
    accepted until its ``exp`` (at most 10 minutes) even if its signing key is retired in
    between, as it would be by any verifier that already checked it.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self._max = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, token: str, *, now: datetime, leeway: timedelta) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        principal, exp = entry
        if exp <= now.timestamp() - leeway.total_seconds():
            self._entries.pop(token, None)
            return None
        return principal

    def put(self, token: str, principal: Principal, exp: float) -> None:
        if len(self._entries) >= self._max:
            # dicts keep insertion order: drop the older half in one pass.
            keep = list(self._entries.items())[self._max // 2 :]
            self._entries = dict(keep)
        self._entries[token] = (principal, exp)


def verify_access_token(
    token: str,
    *,
    keys: KeyService,
    issuer: str,
    now: datetime,
    leeway: timedelta,
    cache: VerifiedTokenCache | None = None,
) -> Principal:
    """Verify a bearer token; any failure is an :class:`AuthenticationError`."""
    if cache is not None:
        cached = cache.get(token, now=now, leeway=leeway)
        if cached is not None:
            return cached
    trusted = {
        k.key.kid: k.key for k in keys.trusted_keys(now=now) if k.purpose is KeyPurpose.ACCESS_TOKEN
    }

    def key_for(header: Mapping[str, Any]) -> VerifyingKey:
        key = trusted.get(str(header.get("kid")))
        if key is None:
            raise VerificationError("key-unknown", "not signed by an access-token key")
        return key

    try:
        verified = verify_jws(
            token, typ=ACCESS_TOKEN_TYP, key_for=key_for, max_size=MAX_ACCESS_TOKEN_SIZE
        )
        claims = verified.claims
        check_times(claims, now=now, leeway=leeway)
        if claims.get("iss") != issuer or claims.get("aud") != issuer:
            raise VerificationError("issuer", "token is not from this issuer")
        subject, kind, scope = claims.get("sub"), claims.get("kind"), claims.get("scope")
        if not (isinstance(subject, str) and isinstance(kind, str) and isinstance(scope, str)):
            raise VerificationError("claims", "sub, kind and scope must be strings")
        purposes_claim, rate_limit = claims.get("purposes"), claims.get("rate_limit")
        if purposes_claim is not None and not isinstance(purposes_claim, str):
            raise VerificationError("claims", "purposes must be a string")
        if rate_limit is not None and (
            isinstance(rate_limit, bool) or not isinstance(rate_limit, int) or rate_limit < 1
        ):
            raise VerificationError("claims", "rate_limit must be a positive integer")
    except CoreError as exc:
        raise AuthenticationError(f"invalid access token: {exc.detail}") from None
    try:
        Actor(subject)
    except InvalidActorError as exc:
        raise AuthenticationError(f"invalid access token: sub: {exc.detail}") from None
    principal = Principal(
        subject=subject,
        kind=kind,
        # A token carries no more than its kind may hold today, whatever it was issued with.
        scopes=frozenset(scope.split()) & allowed_scopes(kind),
        token_id=str(claims.get("jti", "")),
        # A partner token without purposes may verify for none.
        purposes=(
            frozenset(purposes_claim.split())
            if purposes_claim is not None
            else (frozenset() if kind == "partner" else None)
        ),
        rate_limit=rate_limit,
    )
    if cache is not None:
        cache.put(token, principal, float(claims["exp"]))
    return principal
