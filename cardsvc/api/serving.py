"""How the issuer is served: uvicorn, with a bound on the request head.

uvicorn's httptools protocol (the fast one) buffers a request head of any size: a 6.6 MB
``Authorization`` header was read whole before the app saw it. h11 has a bound, but costs
about a fifth of the verify rate (bench/bench_ecard_verify.py). :class:`BoundedHeadProtocol`
keeps httptools and counts the head's bytes as they arrive, before they are parsed: past
:data:`MAX_HEAD_BYTES` the client gets 431 and the connection is closed, whether the head
was still coming or complete in one read. Bodies are bounded in time and size by
:class:`cardsvc.api.limits.BodyLimits`.
"""

from __future__ import annotations

import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from cardsvc.api.problems import HTTP_TITLES, PROBLEM_BASE, PROBLEM_JSON

#: Request line and headers together: ample for a bearer token (at most 4 KiB) and the
#: usual headers, far below what would cost the server anything.
MAX_HEAD_BYTES = 32 * 1024

_END = b"\r\n\r\n"


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing request heads over :data:`MAX_HEAD_BYTES`.

    Heads are counted from the connection's bytes, not the parser's callbacks (httptools
    hands a header over only once it is whole). A pipelined request that starts within the
    read that completes the one before is counted from the next read: its bound is one
    read (at most 256 KiB) looser.
    """

    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a connection starts with a head, and so does what follows
        self._head_bytes = 0  # of the head so far, before this read
        self._tail = b""  # the last bytes of the head so far: its end may span two reads

    def data_received(self, data: bytes) -> None:
        if self._in_head:
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
        self._in_head, self._head_bytes, self._tail = False, 0, b""
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def _refuse_head(self) -> None:
        self.logger.warning("Request head over %d bytes refused.", self.max_head_bytes)
        body = json.dumps({
            "type": f"{PROBLEM_BASE}http-431",
            "title": HTTP_TITLES[431],
            "status": 431,
            "detail": f"the request line and headers are larger than {self.max_head_bytes} bytes",
        }).encode()  # fmt: skip
        self.transport.write(
            STATUS_LINE[431]
            + f"content-type: {PROBLEM_JSON}\r\ncontent-length: {len(body)}\r\n".encode()
            + b"connection: close\r\n\r\n"
            + body
        )
        self.transport.close()
        self._in_head = False  # nothing more is read from this connection


def server_config(app: Any, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration every issuer is served with (``cardsvc serve``, the demo,
    the benches and the end-to-end tests): the bounded-head httptools protocol."""
    return uvicorn.Config(app, host=host, port=port, http=BoundedHeadProtocol, **options)
