"""Bearer-token authentication and per-endpoint scope checks.

Routers declare what they need::

    @router.post("/v1/persons")
    async def enrol(principal: Annotated[Principal, Security(require(Scope.PERSONS_WRITE))]):
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import AuthenticationError, Principal, verify_access_token
from cardsvc.services import Services, utcnow

_bearer = HTTPBearer(auto_error=False, description="OAuth2 access token (client credentials)")


async def current_principal(request: Request) -> Principal:
    """The caller, from its ``Authorization: Bearer`` access token."""
    credentials: HTTPAuthorizationCredentials | None = await _bearer(request)
    if credentials is None:
        raise AuthenticationError("missing bearer access token")
    services: Services = request.app.state.services
    return verify_access_token(
        credentials.credentials,
        keys=services.keys,
        issuer=services.settings.issuer,
        now=utcnow(),
        leeway=services.leeway,
    )


def require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks it holds ``scope``."""

    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        principal.require(scope)
        return principal

    dependency.__name__ = f"require_{scope.name.lower()}"
    return dependency
