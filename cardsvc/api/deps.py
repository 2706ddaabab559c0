"""Dependencies routers declare: the services container; the caller's address."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cardsvc.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def source_address(request: Request) -> str:
    """The address a request came from, as rate limits count it: the ASGI client's host.

    Behind a reverse proxy that is the proxy, unless uvicorn is told to trust it
    (``--proxy-headers --forwarded-allow-ips=<proxy>``): then it is the proxy's
    ``X-Forwarded-For`` entry. Never read the header here: any client can send one.
    """
    client = request.client
    return client.host if client is not None else "unknown"
