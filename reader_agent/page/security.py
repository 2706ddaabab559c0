"""A page on localhost is still reachable by every web page the clerk opens.

Three defences, each against one attack:

- **loopback only**: ``reader-agent serve`` refuses any other address
  (:func:`require_loopback`), so nobody on the network reaches the page;
- **Host header** (DNS rebinding: a hostile name re-pointed at 127.0.0.1 would make the
  browser treat this page as that site's): only ``127.0.0.1:PORT``, ``localhost:PORT``
  and ``[::1]:PORT`` are served; anything else gets 421;
- **cross-site requests** (a hostile page posting to the counter): every POST needs the
  page's CSRF token in ``X-CSRF-Token`` (a random value handed out inside the page, which
  other origins cannot read), and an ``Origin`` header, when the browser sends one, must
  be this page's own.

Plus limits on what one request may send: the head (request line and headers) at most
:data:`MAX_HEAD` (the server's, :mod:`reader_agent.page.server`), the body at most
:data:`MAX_BODY` (413, refused by its declared length before anything is read) and in full
within a deadline (408), so a stalled client holds no request open.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from contextlib import suppress
from http.cookies import CookieError, SimpleCookie
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reader_agent.errors import AgentError
from wording import COOKIE, negotiate, text

__all__ = ["LocalOnly", "NotLoopbackError", "allowed_hosts", "require_loopback"]

MAX_BODY = 16 * 1024
MAX_HEAD = 16 * 1024
CSRF_HEADER = "x-csrf-token"


class NotLoopbackError(AgentError):
    """The page may only listen on a loopback address."""

    code = "not-loopback"


def require_loopback(host: str) -> None:
    """Raise NotLoopbackError unless ``host`` is ``localhost`` or a loopback IP address."""
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise NotLoopbackError(
            f"--host {host!r} is not a loopback address: the counter page listens on "
            "127.0.0.1 (or ::1) only"
        ) from None
    if not address.is_loopback:
        raise NotLoopbackError(
            f"--host {host} is not a loopback address: the counter page listens on "
            "127.0.0.1 (or ::1) only"
        )


def allowed_hosts(port: int) -> frozenset[str]:
    names = ("127.0.0.1", "localhost", "[::1]")
    return frozenset(f"{name}:{port}" for name in names) | (
        frozenset(names) if port == 80 else frozenset()
    )


def _lang(headers: dict[str, bytes]) -> str:
    cookies = SimpleCookie()
    with suppress(CookieError):
        cookies.load(headers.get("cookie", b"").decode("latin-1"))
    chosen = cookies.get(COOKIE)
    return negotiate(cookie=chosen.value if chosen else None,
                     accept_language=headers.get("accept-language", b"").decode("latin-1"))


def _problem(status: int, code: str, lang: str, **params: Any) -> tuple[int, bytes]:
    base = f"counter.problem.{code}"
    body = {"type": f"urn:cardsvc:counter:{code}", "title": text(lang, f"{base}.title"),
            "status": status, "detail": text(lang, f"{base}.detail", **params),
            "next": text(lang, f"{base}.next")}  # fmt: skip
    return status, json.dumps(body, ensure_ascii=False).encode()


class LocalOnly:
    """ASGI middleware: Host check on every request; Origin and CSRF token on POSTs; size."""

    def __init__(
        self, app: ASGIApp, *, port: int, csrf_token: str, body_timeout: float = 10.0
    ) -> None:
        self.app = app
        self.hosts = allowed_hosts(port)
        self.csrf_token = csrf_token.encode()
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        host = headers.get("host", b"").decode("latin-1")
        refusal: tuple[int, bytes] | None = None
        if host not in self.hosts:
            refusal = _problem(421, "wrong-host", _lang(headers))
        elif scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            token = headers.get(CSRF_HEADER, b"")
            if origin is not None and origin.decode("latin-1") != f"http://{host}":
                refusal = _problem(403, "cross-origin", _lang(headers))
            elif not hmac.compare_digest(token, self.csrf_token):
                refusal = _problem(403, "csrf", _lang(headers))
            elif _declared_length(headers.get("content-length", b"")) > MAX_BODY:
                refusal = _problem(413, "too-large", _lang(headers), limit=MAX_BODY)
        if refusal is not None:
            await _send_problem(send, *refusal)
            return
        body = _BoundedBody(receive, timeout=self.body_timeout)
        await self.app(scope, body.receive, body.closing(send))


def _declared_length(value: bytes) -> int:
    return int(value) if value.isdigit() and len(value) < 16 else 0


class _BoundedBody:
    """One request's body, read under the limits: an HTTPException (which FastAPI's body
    reading passes on to the page's handler) past MAX_BODY bytes, chunked or lying about
    its length, or when it has not arrived in full ``timeout`` seconds after the request
    started. A refused request ends its connection: the rest may still be on its way."""

    def __init__(self, receive: Receive, *, timeout: float) -> None:
        self._receive = receive
        self._timeout = timeout
        self._deadline = asyncio.get_running_loop().time() + timeout
        self._seen = 0
        self._complete = False
        self._refused = False

    async def receive(self) -> Message:
        if self._complete:  # what is left to wait for is the disconnect: no deadline
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            detail = f"The request did not arrive within {self._timeout:g} s."
            raise self._refuse(408, detail) from None
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > MAX_BODY:
                raise self._refuse(413, f"A request to the counter is at most {MAX_BODY} bytes.")
            self._complete = not message.get("more_body", False)
        return message

    def _refuse(self, status: int, detail: str) -> HTTPException:
        self._refused = True
        return HTTPException(status, detail)

    def closing(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start" and self._refused:
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (b"connection", b"close")]}  # fmt: skip
            await send(message)

        return wrapped


async def _send_problem(send: Send, status: int, body: bytes) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode())],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
