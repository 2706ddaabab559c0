"""Slow and oversized requests against the real counter page under uvicorn (its own
server, :class:`PageServer`), from raw sockets; no card reader needed.

A declared length over the page's 16 KiB is refused before anything is read (413), a body
that has not arrived by the deadline gets 408, a request head over the bound is refused
(400, h11's answer) without the server waiting for its end. Every wait is bounded by the
client socket's timeout (10 s, far above the 1 s body deadline set here).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.signing import LocalSigner
from reader_agent.issuer import IssuerClient
from reader_agent.page.app import PageConfig, create_app
from reader_agent.page.server import PageServer
from tests.live import RawAnswer, connect, free_port, read_answer, running

TOKEN = "test-csrf-token"
DEAD_ISSUER = "http://127.0.0.1:9"  # discard port: connection refused


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root: Path = tmp_path_factory.mktemp("page-slow")
    issuer = IssuerClient(DEAD_ISSUER, client_id="term-test",
                          signer=LocalSigner(ec.generate_private_key(ec.SECP256R1())))  # fmt: skip
    port = free_port()
    config = PageConfig(state_dir=root / "state", cache_dir=root / "cache", port=port,
                        csrf_token=TOKEN, body_timeout=1.0)  # fmt: skip
    server = PageServer(create_app(config, issuer=issuer, background=False),
                        host="127.0.0.1", port=port)  # fmt: skip
    with running(server, port):
        yield port


def _post_head(port: int, length: int) -> bytes:
    head = (f"POST /api/qr HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nX-CSRF-Token: {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n")  # fmt: skip
    return head.encode()


def _is_problem(answer: RawAnswer, status: int) -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/problem+json", answer
    assert answer.json()["status"] == status


def test_a_declared_length_over_the_limit_is_refused_before_the_body(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(_post_head(port, 99_999_999) + b"{}")
        answer = read_answer(sock)
    _is_problem(answer, 413)


def test_a_chunked_body_over_the_limit_is_refused(port: int) -> None:
    head = _post_head(port, 0).replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
    chunk = b"1000\r\n" + b" " * 0x1000 + b"\r\n"
    with connect(port) as sock:
        sock.sendall(head + chunk * 5)  # 20 KiB, and no last chunk
        answer = read_answer(sock)
    _is_problem(answer, 413)
    assert answer.headers["connection"] == "close"


def test_a_body_that_stalls_gets_408_after_the_deadline(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(_post_head(port, 100) + b'{"text')
        answer = read_answer(sock)  # the rest of the 100 bytes never comes
    _is_problem(answer, 408)
    assert answer.headers["connection"] == "close"


def test_a_body_sent_in_parts_within_the_deadline_is_served(port: int) -> None:
    body = b'{"text": "SSC1:ABC", "purpose": "nope"}'
    with connect(port) as sock:
        sock.sendall(_post_head(port, len(body)) + body[:8])
        threading.Event().wait(0.3)
        sock.sendall(body[8:])
        answer = read_answer(sock)
    # Read whole and validated: the purpose is refused, not the way the body arrived.
    _is_problem(answer, 422)
    assert answer.json()["errors"][0]["loc"] == ["body", "purpose"]


def _huge_head(port: int, size: int) -> bytes:
    return (f"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Padding: ".encode()
            + b"A" * size)  # fmt: skip


def test_a_request_head_over_the_bound_is_refused_before_it_ends(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(_huge_head(port, 64 * 1024))  # and no end
        answer = read_answer(sock)
    assert answer.status == 400, answer


def test_a_6_6_mb_header_is_not_read_whole(port: int) -> None:
    failed: list[OSError] = []

    def send_all(sock: socket.socket) -> None:
        try:
            sock.sendall(_huge_head(port, 6_600_000) + b"\r\n\r\n")
        except OSError as exc:  # the server closed the connection
            failed.append(exc)

    with connect(port) as sock:
        sender = threading.Thread(target=send_all, args=(sock,), daemon=True)
        sender.start()
        answer = read_answer(sock)
        sender.join(10)
    assert answer.status == 400, answer
    assert failed, "the server took all 6.6 MB before it answered"


def test_a_large_head_within_the_bound_is_served(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(_huge_head(port, 8_000) + b"\r\n\r\n")
        answer = read_answer(sock)
    assert answer.status == 200, answer
