"""The OAuth2 token endpoint: client credentials with ``private_key_jwt``.

Rate limited twice (``RateLimits``): per source address before anything is parsed or
verified, so garbage assertions cannot burn signature checks, and per client id once the
assertion verified, so nobody can spend a real client's budget with assertions that
merely name it.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep, source_address
from cardsvc.api.schemas import problems
from cardsvc.auth.clients import OAuthError
from cardsvc.ratelimit import admit

router = APIRouter(tags=["auth"])

MAX_TOKEN_REQUEST = 16 * 1024


class TokenOut(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


@router.post(
    "/v1/oauth/token",
    response_model=TokenOut,
    responses=problems(400, 401, 429),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type", "client_assertion_type", "client_assertion"],
                        "properties": {
                            "grant_type": {"const": "client_credentials"},
                            "client_assertion_type": {"type": "string"},
                            "client_assertion": {"type": "string"},
                            "scope": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def token(request: Request, services: ServicesDep) -> TokenOut:
    """Exchange a signed client assertion (RFC 7523) for a short-lived access token."""
    limits = services.settings.rate_limits
    await admit(
        services.rate_limiter,
        f"token-address:{source_address(request)}",
        limit=limits.token_per_address,
        counted_per="address",
    )
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        raise OAuthError("invalid_request", "send application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_TOKEN_REQUEST:
        raise OAuthError("invalid_request", f"request larger than {MAX_TOKEN_REQUEST} bytes")
    try:
        form = parse_qs(body.decode("ascii"), strict_parsing=False, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "malformed form body") from None
    if any(len(values) > 1 for values in form.values()):
        raise OAuthError("invalid_request", "a parameter is repeated")
    field = {name: values[0] for name, values in form.items()}
    now = services.clock()
    verified = await run_in_threadpool(
        lambda: services.clients.authenticate(
            grant_type=field.get("grant_type"),
            assertion_type=field.get("client_assertion_type"),
            assertion=field.get("client_assertion"),
            now=now,
        )
    )
    # Only now, with the assertion verified: the count is the client's own.
    await admit(
        services.rate_limiter,
        f"token-client:{verified.client.client_id}",
        limit=limits.token_per_client,
        counted_per="client",
    )
    result = await run_in_threadpool(
        lambda: services.clients.grant(verified, scope=field.get("scope"), now=now)
    )
    services.metrics.access_tokens.labels(str(verified.client.kind)).inc()
    return TokenOut(
        access_token=result.access_token,
        token_type=result.token_type,
        expires_in=result.expires_in,
        scope=result.scope,
    )
