"""Request body limits (pure ASGI): 413 on a body over the size limit, refused by its
declared length before anything is read; 408 on a body that has not arrived in full by the
deadline, so a client that stalls mid-body holds no request open.

Both are raised from the wrapped ``receive``: FastAPI re-raises HTTPExceptions from body
reading, so its problem handler answers them on the routes; anything else behind this
middleware (the verify fast path) is answered here.
"""

from __future__ import annotations

import asyncio

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardsvc.api.problems import HTTP_TITLES, problem

#: Every refusal ends the connection: the rest of the body may still be on its way.
_CLOSE = {"Connection": "close"}


class _BodyRefusedError(HTTPException):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail, headers=_CLOSE)


class BodyLimits:
    """Refuse request bodies above ``max_bytes`` (by Content-Length up front, and by
    counting chunked bodies as they stream in) and bodies that have not arrived in full
    ``timeout`` seconds after the request started."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refuse_declared(scope)
        if refusal is not None:
            await self._answer(refusal, scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout
        received = 0
        complete = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # what is left to wait for is the disconnect: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyRefusedError(
                    408, f"the request body did not arrive within {self.timeout:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyRefusedError as exc:
            if not started:
                await self._answer(exc, scope, receive, send)

    def _refuse_declared(self, scope: Scope) -> _BodyRefusedError | None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return _BodyRefusedError(400, "invalid Content-Length")
                if declared > self.max_bytes:
                    return self._too_large()
        return None

    def _too_large(self) -> _BodyRefusedError:
        return _BodyRefusedError(413, f"request body is larger than {self.max_bytes} bytes")

    @staticmethod
    async def _answer(exc: _BodyRefusedError, scope: Scope, receive: Receive, send: Send) -> None:
        """The problem the app's HTTPException handler gives ``exc``, for what has none."""
        status = exc.status_code
        response = problem(status, f"http-{status}", HTTP_TITLES.get(status, "HTTP error"),
                           str(exc.detail))  # fmt: skip
        response.headers.update(_CLOSE)
        await response(scope, receive, send)
