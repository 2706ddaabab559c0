"""A real server under uvicorn on a loopback port, and a raw socket client, for
end-to-end tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from cardsvc.api.serving import HEAD_TIMEOUT_SECONDS, server_config


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(
    app: FastAPI, port: int, *, head_timeout: float = HEAD_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Run the issuer ``app`` under uvicorn, configured as in production, in a thread until
    the block ends."""
    config = server_config(app, host="127.0.0.1", port=port, log_level="warning",
                           head_timeout=head_timeout)  # fmt: skip
    server = uvicorn.Server(config)
    with running(server, port):
        yield


@contextmanager
def running(server: uvicorn.Server, port: int) -> Iterator[None]:
    """Run a configured uvicorn ``server`` in a thread until the block ends."""
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the server did not start on port {port}")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass(frozen=True, kw_only=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_answer(sock: socket.socket) -> RawAnswer:
    """Read one HTTP/1.1 response (Content-Length framed) from ``sock``; the socket's
    timeout bounds the wait, and a server that never answers fails the test."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full answer: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawAnswer(status=int(status_line.split()[1]), headers=headers, body=body[:length])


def connect(port: int, *, timeout: float = 10.0) -> socket.socket:
    """A raw client connection to the loopback ``port``: every wait bounded by ``timeout``."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)
