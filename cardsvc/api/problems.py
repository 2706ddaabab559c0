"""RFC 9457 problem+json for every error the API returns, mapped in one place.

Domain errors carry a kind (:mod:`cardsvc.errors`), never an HTTP status: the status
and the title a person reads come from the tables here. ``type`` ends in the error's
stable ``code``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cardsvc.core.errors import CoreError, DecodeError, InputTooLargeError, VerificationError
from cardsvc.errors import (
    CardsvcError,
    Conflict,
    ErrorKind,
    Forbidden,
    Invalid,
    Malformed,
    NotFound,
    Throttled,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://cardsvc.example/problems/"
PROBLEM_JSON = "application/problem+json"


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


#: Titles of the HTTP-level refusals (``http-<status>`` problems), by status.
HTTP_TITLES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    408: "Request too slow",
    413: "Request too large",
    431: "Request headers too large",
}

#: Status code and the title of an error of each kind that has no title of its own.
KINDS: dict[type[ErrorKind], tuple[int, str]] = {
    Malformed: (400, "Malformed request"),
    Unauthenticated: (401, "Not authenticated"),
    Forbidden: (403, "Not allowed"),
    NotFound: (404, "Not found"),
    Conflict: (409, "Conflicts with the current state"),
    Invalid: (422, "Request refused"),
    Throttled: (429, "Too many requests"),
    Unavailable: (503, "Service unavailable"),
}
#: An error that names no kind is an internal failure.
_INTERNAL = (500, "Internal error")

#: Titles by error code: what went wrong, in words a person reads.
TITLES: dict[str, str] = {
    "not-found": "Not found",
    "person-not-found": "No such person",
    "card-not-found": "No such card",
    "ecard-not-found": "No such e-card",
    "status-list-not-found": "No such status list",
    "conflict-not-found": "No such conflict",
    "client-not-found": "No such client",
    "partner-not-found": "No such partner",
    "entitlement-not-found": "No such entitlement",
    "conflict": "Conflicts with the current state",
    "person-exists": "Person already enrolled",
    "live-card-exists": "The person already has a live card",
    "holder-deceased": "The holder is deceased",
    "illegal-transition": "Not allowed in the card's current state",
    "chip-key-in-use": "Chip key already in use",
    "no-active-card": "No active card",
    "ecard-inactive": "E-card not active",
    "device-already-bound": "This phone already has an active e-card",
    "already-resolved": "Conflict already resolved",
    "entitlement-exists": "Entitlement already exists",
    "entitlement-unavailable": "Entitlement not available",
    "transaction-conflict": "Transaction conflicts with an earlier one",
    "idempotency-request-in-flight": "Request still in progress",
    "invalid-chip-key": "Invalid chip key",
    "bad-request": "Invalid request",
    "invalid-device-key": "Invalid device key",
    "activation-failed": "Activation failed",
    "activation-locked": "Activation code locked",
    "batch-file": "Unusable batch file",
    "token-rejected": "Token rejected",
    "invalid-entitlement": "Invalid entitlement",
    "transaction-refused": "Transaction refused",
    "idempotency-key-reused": "Idempotency key reused",
    "idempotency-key-missing": "Idempotency key missing",
    "idempotency-key-invalid": "Invalid idempotency key",
    "audit-proof-range": "Proof out of range",
    "unauthenticated": "Not authenticated",
    "invalid-device-proof": "Invalid device proof",
    "invalid-client": "Client authentication failed",
    "invalid-request": "Invalid token request",
    "invalid-grant": "Grant refused",
    "invalid-scope": "Scope not allowed",
    "unsupported-grant-type": "Unsupported grant type",
    "forbidden": "Not allowed",
    "purpose-forbidden": "Purpose not allowed for this partner",
    "rate-limited": "Too many requests",
    "store-unavailable": "Shared store unavailable",
    "signing-unavailable": "Signing unavailable",
    "scanner-not-built": "Scanner page not built",
    "not-ready": "Not ready",
    "metrics-forbidden": "Metrics not served to this address",
}


def status_and_title(exc: CardsvcError) -> tuple[int, str]:
    """The status code of ``exc`` (from its kind) and its title."""
    status, title = _INTERNAL
    # The first kind in the class's method resolution order: a subclass that lists
    # another kind first changes its parent's.
    for cls in type(exc).__mro__:
        if cls in KINDS:
            status, title = KINDS[cls]
            break
    return status, TITLES.get(exc.code, title)


def problem_body(exc: CardsvcError) -> dict[str, Any]:
    """The problem document of ``exc``, as JSON-ready members."""
    status, title = status_and_title(exc)
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + exc.code,
        "title": title,
        "status": status,
        "detail": exc.detail,
    }
    extra = getattr(exc, "fields", None)
    if isinstance(extra, dict):
        body.update(extra)
    return body


#: Titles of core's errors (the partner verifier's), by class.
_CORE_TITLES = {
    InputTooLargeError: "Input too large",
    DecodeError: "Malformed input",
    VerificationError: "Verification failed",
}


def _core_status(exc: CoreError) -> int:
    if isinstance(exc, InputTooLargeError):
        return 413
    if isinstance(exc, DecodeError):
        return 400
    if isinstance(exc, VerificationError):
        return 422
    return 400


async def _cardsvc_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, CardsvcError):  # registered for this type only
        raise exc
    body = problem_body(exc)
    status = body["status"]
    if status >= 500:
        log.error("request failed: %s", exc.detail)
    response = JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int):
        response.headers["Retry-After"] = str(retry_after)
    return response


async def _core_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, CoreError):  # registered for this type only
        raise exc
    extra = {"check": exc.check} if isinstance(exc, VerificationError) else {}
    title = next((t for cls, t in _CORE_TITLES.items() if isinstance(exc, cls)), "Invalid input")
    return problem(_core_status(exc), exc.code, title, exc.detail, **extra)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # registered for this type only
        raise exc
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in exc.errors()
    ]
    return problem(
        422, "invalid-request", "Invalid request", "the request is malformed", errors=errors
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # registered for this type only
        raise exc
    title = HTTP_TITLES.get(exc.status_code, "HTTP error")
    response = problem(exc.status_code, f"http-{exc.status_code}", title, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return problem(500, "internal", "Internal error", "an unexpected error occurred; it was logged")


async def problem_for(exc: Exception) -> JSONResponse:
    """The problem response the app's handlers give ``exc`` (for pure ASGI fast paths)."""
    if isinstance(exc, CardsvcError):
        return await _cardsvc_error(None, exc)  # type: ignore[arg-type]
    if isinstance(exc, CoreError):
        return await _core_error(None, exc)  # type: ignore[arg-type]
    return await _unexpected(None, exc)  # type: ignore[arg-type]


def install(app: FastAPI) -> None:
    _document_problems(app)
    app.add_exception_handler(CardsvcError, _cardsvc_error)
    app.add_exception_handler(CoreError, _core_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def _document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers above answer.

    FastAPI files a ``model=Problem`` response under ``application/json``, a type no
    problem is served as, and leaves ``application/problem+json`` without a schema, so no
    client could check a problem's body: the schema moves to the problem type. FastAPI
    also answers 400 itself, before validation, for a JSON body that is not UTF-8, so
    every operation with a body documents 400.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        document = build()
        if fresh:
            for item in document.get("paths", {}).values():
                for operation in item.values():
                    _describe_problems(operation)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _describe_problems(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    if "requestBody" in operation:
        responses.setdefault(
            "400",
            {
                "description": "Malformed request (a body that is not UTF-8 JSON)",
                "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
            },
        )
    for response in responses.values():
        content = response.get("content", {})
        if PROBLEM_JSON in content and content.get("application/json") == {"schema": _PROBLEM_REF}:
            content[PROBLEM_JSON] = content.pop("application/json")
