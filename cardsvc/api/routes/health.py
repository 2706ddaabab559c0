"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from cardsvc import __version__
from cardsvc.api.deps import ServicesDep
from cardsvc.core.keys import KeyPurpose
from cardsvc.db.migrate import current_revision
from cardsvc.errors import TrustListExpiredError

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
