"""Request body size limit (pure ASGI): 413 problem+json before the body is buffered."""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardsvc.api.problems import PROBLEM_BASE, PROBLEM_JSON


class _TooLargeError(HTTPException):
    """Raised from ``receive``; FastAPI re-raises HTTPExceptions from body reading, so the
    problem handler answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is larger than {max_bytes} bytes")


class BodySizeLimit:
    """Refuse request bodies above ``max_bytes``: by Content-Length up front, and by
    counting bytes as they stream in for chunked requests."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._problem(send, 400, "bad-request", "invalid Content-Length")
                    return
                if declared > self.max_bytes:
                    await self._too_large(send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLargeError:
            if not started:
                await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        await self._problem(
            send, 413, "request-too-large", f"request body is larger than {self.max_bytes} bytes"
        )

    @staticmethod
    async def _problem(send: Send, status: int, code: str, detail: str) -> None:
        titles = {413: "Request too large", 400: "Bad request"}
        body = json.dumps(
            {
                "type": PROBLEM_BASE + code,
                "title": titles[status],
                "status": status,
                "detail": detail,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
