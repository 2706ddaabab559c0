"""A stand-in HTTP server on loopback (standard library only): answers each GET with what
the test's ``reply`` returns, and records the queries it was asked."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Reply = Callable[[dict[str, list[str]], str | None], Answer]


@dataclass
class StandIn:
    """``reply(query, if_none_match)`` answers every GET; ``queries`` lists what came."""

    reply: Reply
    base: str = ""
    queries: list[dict[str, list[str]]] = field(default_factory=list)


@contextmanager
def stand_in(reply: Reply | None = None) -> Iterator[StandIn]:
    """A server until the block ends; ``reply`` may be replaced while it runs."""
    server_state = StandIn(reply=reply or (lambda _q, _e: Answer(status=404)))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            server_state.queries.append(query)
            answer = server_state.reply(query, self.headers.get("If-None-Match"))
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    server_state.base = f"http://127.0.0.1:{http.server_address[1]}"
    try:
        yield server_state
    finally:
        http.shutdown()
        http.server_close()
