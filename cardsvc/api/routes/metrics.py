"""``GET /metrics``: the Prometheus text format, to the addresses the settings allow.

Who may read it is decided by source address (``CARDSVC_METRICS_ALLOW``, loopback by
default), not by an access token: a scraper cannot renew a 10-minute token, and the
figures are for the machines that run the issuer. Credentials sent change nothing; an
address outside the list gets 403 problem+json.
"""

from __future__ import annotations

from ipaddress import ip_address

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep, source_address
from cardsvc.api.schemas import Problem
from cardsvc.errors import CardsvcError, Forbidden

router = APIRouter(tags=["operations"])


class MetricsForbiddenError(Forbidden, CardsvcError):
    code = "metrics-forbidden"


def _allowed(address: str, services: ServicesDep) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:  # not an IP address (a test client's name, a Unix socket)
        return False
    return any(ip in network for network in services.settings.metrics_allow)


@router.get(
    "/metrics",
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4"},
        403: {
            "model": Problem,
            "description": "This address may not read the metrics",
            "content": {"application/problem+json": {}},
        },
    },
    response_class=Response,
    summary="Prometheus metrics (to the addresses in CARDSVC_METRICS_ALLOW)",
)
async def metrics(request: Request, services: ServicesDep) -> Response:
    address = source_address(request)
    if not _allowed(address, services):
        raise MetricsForbiddenError(
            "the metrics are served only to the addresses in CARDSVC_METRICS_ALLOW"
        )
    body, content_type = await run_in_threadpool(services.metrics.exposition)
    return Response(content=body, media_type=content_type)
