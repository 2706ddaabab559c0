"""Slow and oversized requests against the real issuer under uvicorn, from raw sockets.

A declared length over the limit is refused before anything is read (413), a body that
has not arrived by the deadline gets 408, a head that has not either gets 408 too (an idle
connection is closed), and a request head over the bound gets 431 —
on the FastAPI routes and on the ``POST /v1/verify`` fast path alike. Every wait is bounded
by the client socket's timeout (10 s, far above the 1 s deadlines set here): a server
that does not answer fails the test instead of hanging it.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cardsvc.api.app import create_app
from cardsvc.services import Services
from cardsvc.settings import Settings
from tests.issuer.registry_helpers import bearer, registry_services
from tests.live import RawAnswer, connect, free_port, read_answer, serving

#: (method, path, needs a bearer token with these scopes): the fast path, a routed
#: operation behind authentication, and the token endpoint that has none.
ROUTES = [
    ("POST", "/v1/verify", frozenset({"verify"})),
    ("POST", "/v1/persons", None),
    ("POST", "/v1/oauth/token", frozenset()),
]


@dataclass(frozen=True)
class Live:
    port: int
    services: Services


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root: Path = tmp_path_factory.mktemp("slow")
    settings = Settings(
        database_url=f"sqlite:///{root / 'cardsvc.db'}",
        key_dir=root / "keys",
        key_passphrase="slow requests test",  # type: ignore[arg-type]
        issuer="https://issuer.test",
        body_timeout_seconds=1,
    )
    services = registry_services(settings)
    port = free_port()
    try:
        with serving(create_app(services.settings, services=services), port, head_timeout=1):
            yield Live(port, services)
    finally:
        services.engine.dispose()


def _head(issuer: Live, method: str, path: str, scopes: frozenset[str] | None,
          *extra: str) -> bytes:  # fmt: skip
    kind = "x-www-form-urlencoded" if path == "/v1/oauth/token" else "json"
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: application/{kind}"]
    if scopes is None:
        lines.append(f"Authorization: {bearer(issuer.services)['Authorization']}")
    elif scopes:
        auth = bearer(issuer.services, scopes, subject="partner-1")["Authorization"]
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


def _is_problem(answer: RawAnswer, status: int) -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/problem+json", answer
    assert answer.json()["status"] == status


@pytest.mark.parametrize(("method", "path", "scopes"), ROUTES)
def test_a_declared_length_over_the_limit_is_refused_before_the_body(
    issuer: Live, method: str, path: str, scopes: frozenset[str] | None
) -> None:
    with connect(issuer.port) as sock:
        sock.sendall(_head(issuer, method, path, scopes, "Content-Length: 99999999") + b"{}")
        answer = read_answer(sock)
    _is_problem(answer, 413)


@pytest.mark.parametrize(("method", "path", "scopes"), ROUTES)
def test_a_chunked_body_over_the_limit_is_refused(
    issuer: Live, method: str, path: str, scopes: frozenset[str] | None
) -> None:
    chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
    with connect(issuer.port) as sock:
        sock.sendall(_head(issuer, method, path, scopes, "Transfer-Encoding: chunked"))
        sock.sendall(chunk * 5)  # 80 KiB, and no last chunk
        answer = read_answer(sock)
    _is_problem(answer, 413)


@pytest.mark.parametrize(("method", "path", "scopes"), ROUTES)
def test_a_body_that_stalls_gets_408_after_the_deadline(
    issuer: Live, method: str, path: str, scopes: frozenset[str] | None
) -> None:
    with connect(issuer.port) as sock:
        sock.sendall(_head(issuer, method, path, scopes, "Content-Length: 100") + b'{"tok')
        answer = read_answer(sock)  # the rest of the 100 bytes never comes
    _is_problem(answer, 408)
    assert answer.headers["connection"] == "close"


def test_a_body_sent_in_parts_within_the_deadline_is_served(issuer: Live) -> None:
    body = b'{"token": "SSC1:ABC", "purpose": "transport"}'
    head = _head(issuer, "POST", "/v1/verify", frozenset({"verify"}),
                 f"Content-Length: {len(body)}")  # fmt: skip
    with connect(issuer.port) as sock:
        sock.sendall(head + body[:10])
        threading.Event().wait(0.3)
        sock.sendall(body[10:])
        answer = read_answer(sock)
    # Read whole and verified: the token itself is refused, not the way it arrived.
    _is_problem(answer, 422)
    assert answer.json()["check"] == "format"


def _huge_head(path: str, size: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ".encode() + (
        b"A" * size
    )


@pytest.mark.parametrize("path", ["/health", "/v1/verify"])
def test_a_request_head_over_the_bound_is_refused_before_it_ends(issuer: Live, path: str) -> None:
    # 64 KiB of one header and no end: the server must answer without waiting for more.
    with connect(issuer.port) as sock:
        sock.sendall(_huge_head(path, 64 * 1024))
        answer = read_answer(sock)
    assert answer.status == 431, answer


def test_a_6_6_mb_authorization_header_is_not_read_whole(issuer: Live) -> None:
    sent: list[BaseException] = []

    def send_all(sock: socket.socket) -> None:
        try:
            sock.sendall(_huge_head("/v1/cards", 6_600_000) + b"\r\n\r\n")
        except OSError as exc:  # the server closed the connection
            sent.append(exc)

    with connect(issuer.port) as sock:
        sender = threading.Thread(target=send_all, args=(sock,), daemon=True)
        sender.start()
        answer = read_answer(sock)
        sender.join(10)
    assert answer.status == 431, answer
    assert sent, "the server took all 6.6 MB before it answered"


def test_a_large_head_within_the_bound_is_served(issuer: Live) -> None:
    with connect(issuer.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
                     + b"p" * 16_000 + b"\r\n\r\n")  # fmt: skip
        answer = read_answer(sock)
    assert answer.status == 200, answer


@pytest.mark.parametrize("path", ["/health", "/v1/verify"])
def test_a_head_that_stalls_gets_408_after_the_deadline(issuer: Live, path: str) -> None:
    with connect(issuer.port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        answer = read_answer(sock)  # the blank line that ends the head never comes
    _is_problem(answer, 408)
    assert answer.headers["connection"] == "close"


def test_a_head_sent_a_few_bytes_at_a_time_cannot_hold_the_connection(issuer: Live) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 1000
    with connect(issuer.port) as sock:
        for i in range(0, len(head), 10):  # 10 bytes every 50 ms: 5 s for the whole head
            if select.select([sock], [], [], 0.05)[0]:
                break  # answered while the head was still coming
            try:
                sock.sendall(head[i : i + 10])
            except OSError:  # closed after answering, between the check and the send
                break
        else:
            pytest.fail("the server waited for the whole head")
        answer = read_answer(sock)
    _is_problem(answer, 408)


def test_an_idle_connection_is_closed_after_the_deadline(issuer: Live) -> None:
    with connect(issuer.port) as sock:
        assert sock.recv(1) == b""  # closed by the server, within the socket's 10 s


def test_each_head_on_a_kept_alive_connection_has_its_own_deadline(issuer: Live) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with connect(issuer.port) as sock:
        sock.sendall(request[:20])
        threading.Event().wait(0.8)  # within the 1 s deadline
        sock.sendall(request[20:])
        assert read_answer(sock).status == 200
        threading.Event().wait(0.5)  # 1.3 s since the connection opened, 0.5 s since the answer
        sock.sendall(request)
        assert read_answer(sock).status == 200
