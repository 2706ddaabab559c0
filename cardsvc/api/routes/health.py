"""Liveness and readiness.

``/health/live``: the process answers (no dependency asked; restart it if this fails).
``/health/ready``: database reachable and migrated, Redis when configured, keys loaded;
503 problem+json ``not-ready`` naming the failing ``dependency``, with ``Retry-After``
(take it out of the load balancer). ``/health`` stays as it was: the database's revision
and the keys, for people and older checks.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from cardsvc import __version__
from cardsvc.api.deps import ServicesDep
from cardsvc.api.schemas import Problem
from cardsvc.core.keys import KeyPurpose
from cardsvc.db.migrate import current_revision
from cardsvc.errors import TrustListExpiredError
from cardsvc.ops.ready import check_ready

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(services: ServicesDep) -> dict[str, object]:
    """Whether the issuer can serve: database reachable and migrated, keys loaded."""
    revision = await asyncio.to_thread(current_revision, services.engine)
    records = services.keys.records()
    keys: dict[str, object] = {
        # The pinned root (offline-root mode: its public key only, the store has none).
        "root": services.keys.root_key().kid,
        "issuing": sum(1 for r in records if r.purpose is not KeyPurpose.ROOT),
    }
    if services.keys.offline_root is not None:
        # The issuer cannot renew this list itself: its expiry is the operator's deadline.
        installed = services.keys.offline_root.require_installed().trust_list
        if installed.expires_at <= services.clock():
            raise TrustListExpiredError(installed.sequence, installed.expires_at)
        keys["trust_list"] = {
            "sequence": installed.sequence,
            "expires_at": installed.expires_at.isoformat(),
        }
    return {
        "status": "ok",
        "version": __version__,
        "database": {"revision": revision},
        "keys": keys,
    }


@router.get("/health/live", summary="Liveness: the process answers (asks no dependency)")
async def live() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


_NOT_READY = {
    "model": Problem,
    "description": "A dependency fails: `dependency` names it (database, redis, keys)",
    "content": {"application/problem+json": {}},
    "headers": {
        "Retry-After": {"description": "Seconds before asking again", "schema": {"type": "integer"}}
    },
}


@router.get(
    "/health/ready",
    responses={503: _NOT_READY},
    summary="Readiness: database reachable and migrated, Redis when configured, keys loaded",
)
async def ready(services: ServicesDep) -> dict[str, object]:
    checked = await run_in_threadpool(
        check_ready, services.engine, services.keys, services.redis, now=services.clock
    )
    return {
        "status": "ok",
        "database": {"revision": checked.revision},
        "redis": "ok" if checked.redis else "not configured",
        "keys": {"issuing": checked.issuing_keys},
    }
