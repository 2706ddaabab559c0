"""``POST /v1/verify`` answered in pure ASGI, before any of FastAPI's machinery.

Verification is the hot path of the whole system (every gate, every counter), and
FastAPI's middleware stack, routing, dependency resolution and response validation cost
more than the signature check itself. :class:`IssuerApp` hands this one request to
:class:`VerifyFastPath` first, which does only what the route does — read a bounded JSON
body, authenticate the bearer token (verified-token cache), check the ``verify`` scope,
run :meth:`cardsvc.ecards.verifier.OnlineVerifier.verify_online`, the one the route calls
(which holds every caller to its rate limit and a partner to its purposes) — and answers
errors with the same problem documents. It catches every exception itself, so nothing it
does needs the error middleware it skips. The FastAPI route stays for OpenAPI and as the
behaviour this one must match (tests compare the two).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from cardsvc.api.observe import Observe, counted_verify
from cardsvc.api.problems import problem, problem_for
from cardsvc.api.security import authenticate
from cardsvc.auth.partners import PURPOSES
from cardsvc.auth.scopes import Scope as AuthScope
from cardsvc.auth.tokens import AuthenticationError
from cardsvc.services import Services

PATH = "/v1/verify"
MAX_BODY = 32 * 1024
_MAX_TOKEN = 16384


def _invalid(loc: str, msg: str) -> Any:
    return problem(
        422,
        "invalid-request",
        "Invalid request",
        "the request is malformed; see errors",
        errors=[{"loc": ["body", loc], "msg": msg, "type": "value_error"}],
    )


def _parse(body: bytes) -> tuple[str, str] | Any:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return _invalid("body", "not valid JSON")
    if not isinstance(data, dict):
        return _invalid("body", "must be a JSON object")
    unknown = set(data) - {"token", "purpose"}
    if unknown:
        return _invalid(sorted(unknown)[0], "Extra inputs are not permitted")
    token, purpose = data.get("token"), data.get("purpose")
    if not isinstance(token, str) or not 1 <= len(token) <= _MAX_TOKEN:
        return _invalid("token", f"a string of 1 to {_MAX_TOKEN} characters")
    if purpose not in PURPOSES:
        return _invalid("purpose", f"one of {', '.join(sorted(PURPOSES))}")
    return token, purpose


class VerifyFastPath:
    """Answer one ``POST /v1/verify`` request (the caller has matched the path)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @staticmethod
    def handles(scope: Scope) -> bool:
        matched: bool = (
            scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST"
        )
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = await self._answer(scope, receive)
        if isinstance(answer, bytes):
            # The success answer goes out as two raw ASGI messages: a Response object
            # would only add its header bookkeeping to the hot path.
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-length", str(len(answer)).encode()),
                (b"content-type", b"application/json"),
            ]})  # fmt: skip
            await send({"type": "http.response.body", "body": answer})
            return
        await answer(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive) -> Any:
        services = self.services
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
        try:
            scheme, _, credentials = authorization.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not credentials:
                raise AuthenticationError("missing bearer access token")
            principal = authenticate(services, credentials.strip())
            principal.require(AuthScope.VERIFY)
        except Exception as exc:
            return await problem_for(exc)
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                return problem(413, "http-413", "Request too large", f"body over {MAX_BODY} bytes")
        parsed = _parse(body)
        if not isinstance(parsed, tuple):
            return parsed
        token, purpose = parsed
        try:
            claims = await counted_verify(services, token, purpose, principal)
        except Exception as exc:  # every error becomes its problem document
            return await problem_for(exc)
        # The route's VerifyOut, serialised without building the pydantic model.
        answer = {"valid": True, "purpose": purpose, "claims": claims}
        return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()


class IssuerApp(FastAPI):
    """The issuer's FastAPI app, with ``POST /v1/verify`` served by a fast path when set
    (a :class:`VerifyFastPath`, wrapped in the middleware it must not skip), and every
    request seen by :class:`cardsvc.api.observe.Observe` when set (ids, logs, metrics)."""

    fast_path: ASGIApp | None = None
    observe: Observe | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        observe = self.observe
        if observe is not None:
            await observe(scope, receive, send)
            return
        await self.dispatch(scope, receive, send)

    def fast_route(self, scope: Scope) -> str | None:
        """The route template of a request the fast path answers, else ``None``."""
        return PATH if self.fast_path is not None and VerifyFastPath.handles(scope) else None

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The fast path for the one request it serves, FastAPI for the rest."""
        fast = self.fast_path
        if fast is not None and VerifyFastPath.handles(scope):
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
