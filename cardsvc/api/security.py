"""Bearer-token authentication and per-endpoint scope checks.

Routers declare what they need::

    @router.post("/v1/persons")
    async def enrol(principal: Annotated[Principal, Security(require(Scope.PERSONS_WRITE))]):

The dependency declares the bearer scheme, so OpenAPI shows every secured operation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import AuthenticationError, Principal, verify_access_token
from cardsvc.services import Services

bearer = HTTPBearer(
    auto_error=False, description="OAuth2 access token (client credentials, private_key_jwt)"
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def authenticate(services: Services, token: str) -> Principal:
    """The caller of an access token: verified locally, then refused if its client was
    suspended since the token was issued (the one check of every authenticated path,
    the verify fast path included)."""
    now = services.clock()
    principal = verify_access_token(
        token,
        keys=services.keys,
        issuer=services.settings.issuer,
        now=now,
        leeway=services.leeway,
        cache=services.token_cache,
    )
    services.clients.suspensions.refuse_if_suspended(principal.subject, now=now)
    return principal


def current_principal(request: Request, credentials: Credentials) -> Principal:
    """The caller, from its ``Authorization: Bearer`` access token."""
    if credentials is None:
        raise AuthenticationError("missing bearer access token")
    return authenticate(request.app.state.services, credentials.credentials)


def require(scope: Scope) -> Callable[[Request, Credentials], Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks it holds ``scope``."""

    async def dependency(request: Request, credentials: Credentials) -> Principal:
        principal = current_principal(request, credentials)
        principal.require(scope)
        return principal

    dependency.__name__ = f"require_{scope.name.lower()}"
    return dependency
