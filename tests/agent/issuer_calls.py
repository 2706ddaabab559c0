"""Calls to a live issuer as a test operator, for the tests that set a counter up."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from cardsvc.auth.tokens import issue_access_token
from cardsvc.services import Services, utcnow


def operator_call(
    services: Services, base: str, method: str, path: str, body: dict[str, Any] | None,
    *scopes: str,
) -> Any:
    """``method path`` at the issuer on ``base`` with a fresh operator token for ``scopes``;
    the JSON answer."""
    token = issue_access_token(
        services.keys, issuer=services.settings.issuer, subject="test-admin",
        kind="operator", scopes=frozenset(scopes), now=utcnow(),
    )  # fmt: skip
    request = urllib.request.Request(  # noqa: S310 - loopback test server
        base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.load(answer)
