"""Status list shards at stable URLs (public: verifiers fetch them without credentials)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.api.pagination import Cursor, Limit, Page, int_cursor, next_cursor
from cardsvc.api.schemas import ShardOut, problems
from cardsvc.core.statuslist import JWT_TYP

router = APIRouter(prefix="/v1/status-lists", tags=["status lists"])

STATUS_LIST_MEDIA_TYPE = "application/" + JWT_TYP


@router.get("", response_model=Page[ShardOut], responses=problems(422))
async def list_shards(
    services: ServicesDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[ShardOut]:
    """Every status list shard and its URL."""
    after = int_cursor("shard", cursor)
    ids = await run_in_threadpool(services.status.shard_ids)
    if after is not None:
        ids = [i for i in ids if i > after]
    page = ids[:limit]
    return Page(
        items=[ShardOut(shard=i, uri=services.status.uri(i)) for i in page],
        next_cursor=next_cursor("shard", list(page), limit),
    )


@router.get(
    "/{shard}",
    response_class=Response,
    responses={
        200: {
            "description": "The Status List Token (JWT) of this shard",
            "content": {STATUS_LIST_MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        304: {"description": "Not modified (If-None-Match)"},
        **problems(404, 422),
    },
)
async def status_list(
    shard: Annotated[int, Path(ge=0, le=2**31 - 1)], request: Request, services: ServicesDep
) -> Response:
    """The shard as a signed ``statuslist+jwt`` with ``ttl``; ETag and Cache-Control let
    caches and CDNs serve it, and a change is in the next list served."""
    now = services.clock()
    interval = services.settings.status_sync_interval_seconds

    def build() -> tuple[str, str]:
        services.cards.sweep(now=now)
        services.status.sync_due(interval)
        publication = services.status.publication(shard, now=now)
        return publication.body, publication.etag

    body, etag = await run_in_threadpool(build)
    ttl = services.settings.cache_ttl_seconds
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={ttl}"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type=STATUS_LIST_MEDIA_TYPE, headers=headers)
