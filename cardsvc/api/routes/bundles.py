"""The verifier bundle (public, like the status lists and trust list it aggregates).

No credentials: a bundle holds only what is already published without them, and a
partner that verifies offline must be able to fetch it through any cache or CDN.

A delta (``?since=N``) is built per request, so it is rate limited: per client when the
request carries a valid bearer token, else per source address (``RateLimits``). A full
bundle is one cached publication and is not counted.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep, source_address
from cardsvc.api.schemas import problems
from cardsvc.api.security import authenticate
from cardsvc.auth.tokens import AuthenticationError
from cardsvc.core.bundle import BUNDLE_TYP
from cardsvc.ratelimit import admit
from cardsvc.services import Services

router = APIRouter(prefix="/v1/bundles", tags=["status lists"])

BUNDLE_MEDIA_TYPE = "application/" + BUNDLE_TYP


@router.get(
    "/latest",
    response_class=Response,
    responses={
        200: {
            "description": "The signed verifier bundle (verifier-bundle+jwt)",
            "content": {BUNDLE_MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        304: {"description": "Not modified (If-None-Match)"},
        **problems(422, 429),
    },
)
async def latest(
    request: Request,
    services: ServicesDep,
    since: Annotated[
        int | None, Query(ge=0, description="Delta: only shards changed since this version")
    ] = None,
    shard: Annotated[
        list[int] | None, Query(description="Only these shards (repeat); default all")
    ] = None,
    delta: Annotated[
        Literal["shards", "entries"],
        Query(
            description="With since: 'entries' lets the delta carry a changed shard as its "
            "changed entries (status_patches) when that is smaller than the whole token; "
            "'shards' (default, what verifiers without patch support need) sends it whole"
        ),
    ] = "shards",
) -> Response:
    """The trust list, status list shards and the issuer's signed time in one signed,
    versioned bundle. ``?since=N`` answers a delta (``base`` N) when version N is known,
    304 when N is the current version, else a full bundle; ``?shard=`` restricts it to the
    shards a partner uses; ``&delta=entries`` asks for entry patches in a delta."""
    if since is not None:
        await _count_delta(services, request)
    now = services.clock()
    interval = services.settings.status_sync_interval_seconds
    retention = timedelta(hours=services.settings.bundle_retention_hours)

    def build() -> tuple[str, str, int]:
        services.cards.sweep(now=now)
        services.status.sync_due(interval)
        published = services.bundles.latest(
            now=now, since=since, shards=shard, entries=delta == "entries"
        )
        # Retention, at most hourly per process; after serving, so the version just
        # minted is the newest the prune keeps.
        services.bundles.prune_due(now=now, keep=retention)
        return published.body, published.etag, published.version

    body, etag, version = await run_in_threadpool(build)
    ttl = services.settings.cache_ttl_seconds
    headers = {
        "ETag": etag,
        "Cache-Control": f"public, max-age={ttl}",
        "Bundle-Version": str(version),
    }
    # A verifier that already holds the current version gets nothing new, whichever ETag
    # (a full bundle's or a delta's) it kept. A ``since`` above the current version is
    # not 304: that verifier holds another issuer's history and needs the full bundle
    # (whose lower version its rollback check then reports).
    if since == version or etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type=BUNDLE_MEDIA_TYPE, headers=headers)


async def _count_delta(services: Services, request: Request) -> None:
    """Count a delta request against its client, or its address when anonymous (a
    bearer token that does not authenticate counts as none: the bundle is public)."""
    limits = services.settings.rate_limits
    # Read here, not declared as a security scheme: the operation stays public.
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    subject = None
    if scheme.lower() == "bearer" and token.strip():
        try:
            subject = authenticate(services, token.strip()).subject
        except AuthenticationError:
            subject = None
    if subject is not None:
        key, limit, per = f"bundle-client:{subject}", limits.bundle_delta_per_client, "client"
    else:
        key = f"bundle-address:{source_address(request)}"
        limit, per = limits.bundle_delta_per_address, "address"
    await admit(services.rate_limiter, key, limit=limit, counted_per=per)
