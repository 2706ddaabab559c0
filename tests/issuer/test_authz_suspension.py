"""Suspending a client ends the access tokens it already holds, on every path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cardsvc.api.app import create_app
from cardsvc.auth.clients import ClientKind
from cardsvc.core.assertion import ASSERTION_TYPE, make_client_assertion
from cardsvc.core.keys import public_jwk
from cardsvc.core.signing import LocalSigner
from cardsvc.db.states import Role
from cardsvc.services import Services
from tests.issuer.registry_helpers import services  # a fixture

__all__ = ["services"]


def token_for(services: Services, kind: ClientKind, **kw: Any) -> tuple[str, dict[str, str]]:
    """A registered client and an access token from the token endpoint's logic."""
    signer = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    client = services.clients.register(
        kind=kind,
        display_name="Someone",
        jwk=public_jwk(signer.private_key.public_key()),
        created_by="test",
        now=services.clock(),
        **kw,
    )
    now = services.clock()
    answer = services.clients.exchange(
        grant_type="client_credentials",
        assertion_type=ASSERTION_TYPE,
        assertion=make_client_assertion(
            signer, client_id=client.client_id, audience=services.clients.token_endpoint, now=now
        ),
        scope=None,
        now=now,
    )
    return client.client_id, {"Authorization": f"Bearer {answer.access_token}"}


def assert_unauthenticated(answer: Any) -> None:
    assert answer.status_code == 401, (answer.status_code, answer.text[:200])
    assert answer.headers["content-type"] == "application/problem+json"
    assert "suspended" in answer.json()["detail"]


@pytest.mark.parametrize("fast_verify", [True, False], ids=["fast-path", "route"])
def test_suspending_a_client_ends_its_tokens_in_this_process(
    services: Services, fast_verify: bool
) -> None:
    client = TestClient(create_app(services.settings, services=services, fast_verify=fast_verify))
    clerk_id, clerk = token_for(services, ClientKind.OPERATOR, role=Role.CLERK)
    partner_id, partner = token_for(services, ClientKind.PARTNER, purposes={"transport"})
    verify = {"token": "SSC1:AAAA", "purpose": "transport"}
    assert client.get("/v1/persons", headers=clerk).status_code == 200
    assert client.post("/v1/verify", json=verify, headers=partner).status_code not in (401, 403)

    services.clients.set_active(clerk_id, active=False)
    services.clients.set_active(partner_id, active=False)
    assert_unauthenticated(client.get("/v1/persons", headers=clerk))
    assert_unauthenticated(client.post("/v1/verify", json=verify, headers=partner))

    services.clients.set_active(clerk_id, active=True)
    assert client.get("/v1/persons", headers=clerk).status_code == 200


def test_a_suspension_through_the_cli_reaches_the_running_issuer(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI is another process with its own services: the issuer learns of the
    suspension from the database within seconds, not when the token expires."""
    from cardsvc.cli.main import app

    settings = services.settings
    monkeypatch.setenv("CARDSVC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CARDSVC_KEY_DIR", str(settings.key_dir))
    monkeypatch.setenv("CARDSVC_KEY_PASSPHRASE", "test passphrase")
    monkeypatch.setenv("CARDSVC_ISSUER", settings.issuer)
    client = TestClient(create_app(services.settings, services=services))
    clerk_id, clerk = token_for(services, ClientKind.OPERATOR, role=Role.CLERK)
    assert client.get("/v1/persons", headers=clerk).status_code == 200

    done = CliRunner().invoke(app, ["clients", "suspend", clerk_id])
    assert done.exit_code == 0, done.output
    assert "SUSPENDED" in done.output
    start = services.clock()
    services.clock = lambda: start + timedelta(seconds=5)  # well within the token's 10 min
    assert_unauthenticated(client.get("/v1/persons", headers=clerk))
