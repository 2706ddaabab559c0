"""The agent's client of the issuer API, authenticated as a counter terminal.

The terminal holds its own private key (registered with ``cardsvc clients create terminal
--jwk``); it proves itself with a ``private_key_jwt`` assertion (RFC 7523) and caches the
short-lived access token it gets back. Only the standard library speaks HTTP here, so
the agent needs no HTTP dependency.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from cardsvc.core.assertion import ASSERTION_TYPE, make_client_assertion
from cardsvc.core.keys import VerifyingKey
from cardsvc.core.signing import Signer
from reader_agent.errors import IssuerError, IssuerUnreachableError

#: Answers larger than this are not from our issuer (status shards are ~100 KB at most).
MAX_ANSWER = 8 * 1024 * 1024


class IssuerClient:
    """Calls the issuer as one terminal client; thread-safe."""

    def __init__(
        self, base_url: str, *, client_id: str, signer: Signer, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._signer = signer
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (token, monotonic expiry)

    @property
    def signer(self) -> Signer:
        """The terminal's key (it also counter-signs transaction records)."""
        return self._signer

    def __repr__(self) -> str:
        return f"IssuerClient({self.base_url!r}, client_id={self.client_id!r})"

    def _send(self, request: urllib.request.Request) -> tuple[int, bytes]:
        return _send(request, self.base_url, self._timeout)

    def _json(self, status: int, body: bytes, what: str) -> Any:
        return _json(status, body, what)

    def access_token(self) -> str:
        """A valid access token, fetched with a fresh client assertion when needed."""
        with self._lock:
            if self._token is not None and time.monotonic() < self._token[1]:
                return self._token[0]
            from datetime import UTC, datetime

            endpoint = f"{self.base_url}/v1/oauth/token"
            assertion = make_client_assertion(
                self._signer, client_id=self.client_id, audience=endpoint, now=datetime.now(UTC)
            )
            form = urllib.parse.urlencode(
                {
                    "grant_type": "client_credentials",
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion,
                }
            ).encode()
            request = urllib.request.Request(  # noqa: S310 - the configured issuer URL
                endpoint,
                data=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            data = self._json(*self._send(request), "token")
            token, lifetime = data.get("access_token"), data.get("expires_in")
            if not isinstance(token, str) or not isinstance(lifetime, int):
                raise IssuerError("token: malformed token response")
            # Renew a little early so a request never leaves with a token about to expire.
            self._token = (token, time.monotonic() + max(0, lifetime - 30))
            return token

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """An authenticated JSON request; returns the decoded answer or raises IssuerError."""
        data = None if body is None else json.dumps(body).encode()
        headers = {
            **(headers or {}),
            "Authorization": f"Bearer {self.access_token()}",
            "Accept": "application/json",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - the configured issuer URL
            f"{self.base_url}{path}", data=data, headers=headers, method=method
        )
        return self._json(*self._send(request), f"{method} {path}")

    def personalize(self, card_number: str, chip_key: VerifyingKey) -> str:
        """Send the chip's public key; the issuer answers with the signed card document."""
        jwk = {k: v for k, v in chip_key.jwk().items() if k in ("kty", "crv", "x", "y")}
        path = f"/v1/cards/{urllib.parse.quote(card_number)}/personalization"
        answer = self.call("POST", path, {"chip_jwk": jwk})
        document = answer.get("document") if isinstance(answer, dict) else None
        if not isinstance(document, str):
            raise IssuerError("personalization: the answer holds no card document")
        return document


def _send(request: urllib.request.Request, base_url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return int(answer.status), answer.read(MAX_ANSWER + 1)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(MAX_ANSWER + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise IssuerUnreachableError(f"issuer {base_url} unreachable: {exc}") from None


def _json(status: int, body: bytes, what: str) -> Any:
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if status >= 400:
        detail = data.get("detail") if isinstance(data, dict) else None
        raise IssuerError(
            f"{what}: issuer answered {status}: {detail or 'no detail'}",
            status=status,
            problem=data,
        )
    if data is None:
        raise IssuerError(f"{what}: issuer answered {status} without JSON", status=status)
    return data


def status_list_uris(base_url: str, *, timeout: float = 10.0) -> list[str]:
    """Every status list shard the issuer publishes (a public listing, paged)."""
    base_url = base_url.rstrip("/")
    uris: list[str] = []
    cursor: str | None = None
    while True:
        query = "?limit=200" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        request = urllib.request.Request(  # noqa: S310 - the configured issuer URL
            f"{base_url}/v1/status-lists{query}", headers={"Accept": "application/json"}
        )
        page = _json(*_send(request, base_url, timeout), "status lists")
        items = page.get("items") if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise IssuerError("status lists: malformed listing")
        uris += [str(item["uri"]) for item in items if isinstance(item, dict) and "uri" in item]
        cursor = page.get("next_cursor")
        if not cursor:
            return uris


def reachable(base_url: str, *, timeout: float = 2.0) -> bool:
    """Whether the issuer answers its public ``GET /health`` (no credentials needed)."""
    request = urllib.request.Request(  # noqa: S310 - the configured issuer URL
        f"{base_url.rstrip('/')}/health", headers={"Accept": "application/json"}
    )
    try:
        status, _body = _send(request, base_url, timeout)
    except IssuerUnreachableError:
        return False
    return status < 500
