"""RFC 9457 problem+json for every error the API returns, mapped in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cardsvc.core.errors import CoreError, DecodeError, InputTooLargeError, VerificationError
from cardsvc.errors import CardsvcError

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://cardsvc.example/problems/"
PROBLEM_JSON = "application/problem+json"


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


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
    if exc.http_status >= 500:
        log.error("request failed: %s", exc.detail)
    extra = getattr(exc, "fields", None)
    fields = extra if isinstance(extra, dict) else {}
    response = problem(exc.http_status, exc.code, type(exc).__name__, exc.detail, **fields)
    if exc.http_status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int):
        response.headers["Retry-After"] = str(retry_after)
    return response


async def _core_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, CoreError):  # registered for this type only
        raise exc
    extra = {"check": exc.check} if isinstance(exc, VerificationError) else {}
    return problem(_core_status(exc), exc.code, type(exc).__name__, exc.detail, **extra)


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
    title = {404: "Not found", 405: "Method not allowed", 413: "Request too large"}.get(
        exc.status_code, "HTTP error"
    )
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
    app.add_exception_handler(CardsvcError, _cardsvc_error)
    app.add_exception_handler(CoreError, _core_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
