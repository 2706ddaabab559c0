"""Published keys: the JWK Set and the root-signed trust list."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from cardsvc.api.deps import ServicesDep
from cardsvc.services import etag_of, utcnow

router = APIRouter(tags=["keys"])

TRUST_LIST_MEDIA_TYPE = "application/trustlist+jwt"


def _cached(request: Request, body: str, etag: str, media_type: str, ttl: int) -> Response:
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={ttl}"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type=media_type, headers=headers)


@router.get("/.well-known/jwks.json", response_class=Response)
async def jwks(request: Request, services: ServicesDep) -> Response:
    """Every issuing key a verifier may need now, with its purpose and window."""
    body = services.trust_list.jwks_json(now=utcnow())
    ttl = services.settings.cache_ttl_seconds
    return _cached(request, body, etag_of(body), "application/jwk-set+json", ttl)


@router.get("/v1/trust-list", response_class=Response)
async def trust_list(request: Request, services: ServicesDep) -> Response:
    """The current trust list, a compact JWS signed by the root key."""
    publication = services.trust_list.current(now=utcnow())
    ttl = services.settings.cache_ttl_seconds
    return _cached(request, publication.body, publication.etag, TRUST_LIST_MEDIA_TYPE, ttl)
