"""How the issuer is served: uvicorn, with a bound on the request head.

uvicorn's httptools protocol (the fast one) buffers a request head of any size: a 6.6 MB
``Authorization`` header was read whole before the app saw it. h11 has a bound, but costs
about a fifth of the verify rate (bench/bench_ecard_verify.py). :class:`BoundedHeadProtocol`
keeps httptools and counts the head's bytes as they arrive, before they are parsed: past
:data:`MAX_HEAD_BYTES` the client gets 431 and the connection is closed, whether the head
was still coming or complete in one read. A head must also arrive in time: within
:data:`HEAD_TIMEOUT_SECONDS` of the connection opening, or of the previous response on a
kept-alive connection (uvicorn cancels its keep-alive timer at the first byte, so a client
sending one byte a second held a connection for ever). A head begun and not finished by
then gets 408; a connection that sent nothing is closed. Bodies are bounded in time and
size by :class:`cardsvc.api.limits.BodyLimits`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from cardsvc.api.problems import HTTP_TITLES, PROBLEM_BASE, PROBLEM_JSON

#: Request line and headers together: ample for a bearer token (at most 4 KiB) and the
#: usual headers, far below what would cost the server anything.
MAX_HEAD_BYTES = 32 * 1024

#: Seconds a request head has to arrive in full (the settings' ``head_timeout_seconds``).
HEAD_TIMEOUT_SECONDS = 10.0

_END = b"\r\n\r\n"


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing request heads over :data:`MAX_HEAD_BYTES`.

    Heads are counted from the connection's bytes, not the parser's callbacks (httptools
    hands a header over only once it is whole). A pipelined request that starts within the
    read that completes the one before is counted from the next read: its bound is one
    read (at most 256 KiB) looser.
    """

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout = HEAD_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a connection starts with a head, and so does what follows
        self._head_begun = False  # some bytes of the awaited head have arrived
        self._head_bytes = 0  # of the head so far, before this read
        self._tail = b""  # the last bytes of the head so far: its end may span two reads
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._head_arrived()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _head_arrived(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or not self._in_head:
            return
        if not self._head_begun:  # an idle connection: nothing to answer
            self.transport.close()
            return
        self.logger.warning("Request head not complete after %s s: refused.", self.head_timeout)
        self._refuse(408, f"the request head did not arrive within {self.head_timeout:g} s")

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_begun = True
            seen = self._tail + data if self._tail else data
            end = seen.find(_END)
            size = self._head_bytes + (len(data) if end < 0 else end - len(self._tail))
            if size > self.max_head_bytes:
                self._refuse_head()
                return
            if end < 0:
                self._head_bytes = size
                self._tail = seen[-(len(_END) - 1) :]
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_begun, self._head_bytes, self._tail = False, False, 0, b""
        self._head_arrived()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next head is awaited unless it came pipelined (its cycle is running now).
        if self._in_head and not self.transport.is_closing() and not self.pipeline:
            self._await_head()

    def _refuse_head(self) -> None:
        self.logger.warning("Request head over %d bytes refused.", self.max_head_bytes)
        self._refuse(
            431, f"the request line and headers are larger than {self.max_head_bytes} bytes"
        )

    def _refuse(self, status: int, detail: str) -> None:
        self._head_arrived()
        body = json.dumps({
            "type": f"{PROBLEM_BASE}http-{status}",
            "title": HTTP_TITLES[status],
            "status": status,
            "detail": detail,
        }).encode()  # fmt: skip
        self.transport.write(
            STATUS_LINE[status]
            + f"content-type: {PROBLEM_JSON}\r\ncontent-length: {len(body)}\r\n".encode()
            + b"connection: close\r\n\r\n"
            + body
        )
        self.transport.close()
        self._in_head = False  # nothing more is read from this connection


class BoundedHeadProtocolFactory:
    """Builds :class:`BoundedHeadProtocol` connections with a given head timeout.

    A module-level callable (not a class made per call) so the uvicorn configuration
    pickles: with ``workers`` > 1 uvicorn spawns each worker and hands it the config.
    """

    def __init__(self, head_timeout: float) -> None:
        self.head_timeout = head_timeout

    def __call__(self, *args: Any, **kwargs: Any) -> BoundedHeadProtocol:
        protocol = BoundedHeadProtocol(*args, **kwargs)
        protocol.head_timeout = self.head_timeout
        return protocol


def server_config(
    app: Any,
    *,
    host: str,
    port: int,
    head_timeout: float = HEAD_TIMEOUT_SECONDS,
    **options: Any,
) -> uvicorn.Config:
    """The uvicorn configuration every issuer is served with (``cardsvc serve``, the demo,
    the benches and the end-to-end tests): the bounded-head httptools protocol.

    ``app`` may be an import string (with ``factory=True`` in ``options``), as uvicorn
    needs for ``workers`` > 1."""
    protocol: Any = BoundedHeadProtocolFactory(head_timeout)
    return uvicorn.Config(app, host=host, port=port, http=protocol, **options)
