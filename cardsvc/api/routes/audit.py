"""The audit log: the signed checkpoint (public) and Merkle proofs (scope ``audit:read``).

The checkpoint is signed and says only how many leaves the log has and their root hash,
so it is public and cacheable like the trust list. Proofs hand out leaf and subtree
hashes; leaves hold no personal data (salted commitments only), but their hashes and the
log's growth still describe activity, so proofs need ``audit:read`` (auditors, and the
terminals and partners that hold receipts).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, Security
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.api.schemas import AUTH, AuditReceipt, problems
from cardsvc.api.security import require
from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import Principal
from cardsvc.core.checkpoint import CHECKPOINT_TYP
from cardsvc.core.keys import b64url_encode
from cardsvc.core.merkle import leaf_hash
from cardsvc.services import Services, etag_of

router = APIRouter(prefix="/v1/audit", tags=["audit"])

CHECKPOINT_MEDIA_TYPE = "application/" + CHECKPOINT_TYP
AuditRead = Annotated[Principal, Security(require(Scope.AUDIT_READ))]
_MAX = 2**62


class InclusionProofOut(BaseModel):
    index: int
    size: int
    leaf_hash: str = Field(description="base64url")
    hashes: list[str] = Field(description="RFC 9162 audit path, deepest first, base64url")


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    hashes: list[str] = Field(description="RFC 9162 consistency proof, base64url")


def audit_receipt(services: Services, card_id: uuid.UUID, kind: str) -> AuditReceipt | None:
    """The receipt of the latest ``kind`` leaf about a card (after its commit)."""
    index = services.audit.leaf_of(f"card:{card_id}", kind)
    if index is None:
        return None
    data = services.audit.leaf_data(index)
    return AuditReceipt(
        leaf_index=index, leaf_hash=b64url_encode(leaf_hash(data)), leaf=b64url_encode(data)
    )


@router.get(
    "/checkpoint",
    response_class=Response,
    responses={
        200: {
            "description": "The latest signed checkpoint (compact JWS: iss, iat, size, root)",
            "content": {CHECKPOINT_MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        304: {"description": "Not modified (If-None-Match)"},
    },
)
async def checkpoint(request: Request, services: ServicesDep) -> Response:
    """Signed with the audit-checkpoint key; a new one is signed (after recomputing the
    root from the stored leaves) when the log grew and the latest is a cache TTL old."""
    ttl = services.settings.cache_ttl_seconds
    current = await run_in_threadpool(
        lambda: services.audit.current(now=services.clock(), max_age=timedelta(seconds=ttl))
    )
    etag = etag_of(current.jws)
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={ttl}"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content=current.jws, media_type=CHECKPOINT_MEDIA_TYPE, headers=headers)


@router.get("/proofs/inclusion", response_model=InclusionProofOut, responses=problems(*AUTH, 400))
async def inclusion_proof(
    _principal: AuditRead,
    services: ServicesDep,
    index: Annotated[int, Query(ge=0, le=_MAX)],
    size: Annotated[int | None, Query(ge=1, le=_MAX, description="Default: the tree now")] = None,
) -> InclusionProofOut:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves (a checkpoint's)."""
    tree_size, leaf, hashes = await run_in_threadpool(services.audit.inclusion, index, size)
    return InclusionProofOut(
        index=index,
        size=tree_size,
        leaf_hash=b64url_encode(leaf),
        hashes=[b64url_encode(h) for h in hashes],
    )


@router.get(
    "/proofs/consistency", response_model=ConsistencyProofOut, responses=problems(*AUTH, 400)
)
async def consistency_proof(
    _principal: AuditRead,
    services: ServicesDep,
    first: Annotated[int, Query(ge=1, le=_MAX)],
    second: Annotated[int, Query(ge=1, le=_MAX)],
) -> ConsistencyProofOut:
    """Proof that the tree of ``second`` leaves extends the tree of ``first`` leaves."""
    hashes = await run_in_threadpool(services.audit.consistency, first, second)
    return ConsistencyProofOut(
        first=first, second=second, hashes=[b64url_encode(h) for h in hashes]
    )
