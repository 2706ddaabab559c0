"""Every request, seen once at the edge: its id, its access log line and its metrics.

:class:`Observe` wraps the whole issuer app, the ``/v1/verify`` fast path included. It
takes the caller's ``X-Request-ID`` when well formed (1 to 128 of letters, digits and
``._:-``, starting with a letter or digit), else makes one, keeps it for the logs
(:data:`cardsvc.ops.logs.request_id`) and sends it back in the response's
``X-Request-ID``. It times the request and counts it by method, route template (never the
raw path: bounded labels, and no card number or code in a label or a log line) and status.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from cardsvc.auth.tokens import Principal
from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.ecards.errors import TokenRejectedError
from cardsvc.errors import CardsvcError
from cardsvc.ops.logs import request_id
from cardsvc.ops.metrics import UNMATCHED, Metrics
from cardsvc.services import Services

log = logging.getLogger("cardsvc.access")

HEADER = b"x-request-id"
_WELL_FORMED = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

ASGICall = Callable[[Scope, Receive, Send], Awaitable[None]]


def incoming_id(scope: Scope) -> str:
    """The caller's request id when well formed, else a fresh one."""
    for name, value in scope.get("headers", ()):
        if name == HEADER and _WELL_FORMED.fullmatch(value):
            return bytes(value).decode("ascii")
    return uuid.uuid4().hex


def route_of(scope: Scope, fallback: str | None) -> str:
    """The template of the route that answered (``/v1/cards/{card_number}``)."""
    route = scope.get("route")
    path: object = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return fallback or UNMATCHED


class Observe:
    """ASGI wrapper: request id, timing, metrics and the access log line."""

    def __init__(
        self,
        app: ASGICall,
        metrics: Metrics,
        *,
        fast_route: Callable[[Scope], str | None],
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.fast_route = fast_route
        #: One line per request at INFO (``CARDSVC_ACCESS_LOG``); about 50 us a request
        #: in JSON (bench/bench_observe.py), so a verify-only node may leave it to nginx.
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_id(scope)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500  # unless an answer starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            route = route_of(scope, self.fast_route(scope))
            method = scope["method"]
            self.metrics.request(method, route, status, seconds)
            if self.access_log:
                log.info(
                    "%s %s %d", method, route, status,
                    extra={"method": method, "route": route, "status": status,
                           "duration_ms": round(seconds * 1000, 3)},
                )  # fmt: skip
            request_id.reset(token)


def refusal_reason(exc: BaseException) -> str:
    """What a verify refusal counts as: the failed check, else the error's code."""
    if isinstance(exc, TokenRejectedError):
        return exc.check
    if isinstance(exc, VerificationError):
        return exc.check
    if isinstance(exc, CardsvcError | CoreError):
        return exc.code
    return "internal"


async def counted_verify(
    services: Services, token: str, purpose: str, principal: Principal
) -> dict[str, Any]:
    """``services.verifier.verify_online``, its outcome counted (the route and the fast path
    both verify through here)."""
    try:
        claims: dict[str, Any] = await services.verifier.verify_online(
            token, purpose, principal, now=services.clock()
        )
    except Exception as exc:
        services.metrics.verified(refusal_reason(exc))
        raise
    services.metrics.verified(None)
    return claims
