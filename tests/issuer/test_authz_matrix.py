"""The authorization matrix (tests/issuer/authz_matrix.py), request by request.

One issuer on SQLite and one world per module: a holder with a personalised card and an
activated e-card (and a second e-card for the loss report), and a registered client per
caller. Every operation of the OpenAPI document is one test; an operation without an
entry in the matrix fails, so a new endpoint fails the build until its row is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.auth.clients import ClientKind
from cardsvc.auth.tokens import issue_access_token
from cardsvc.core.assertion import ASSERTION_TYPE, make_client_assertion
from cardsvc.core.keys import public_jwk
from cardsvc.core.signing import LocalSigner
from cardsvc.db.states import Role
from cardsvc.services import Services
from cardsvc.settings import Settings
from tests.issuer.authz_matrix import CALLERS, MATRIX, render_table
from tests.issuer.ecard_helpers import Phone, activate, active_holder
from tests.issuer.registry_helpers import registry_services

README = Path(__file__).resolve().parents[2] / "README.md"
#: Bodies that pass validation where the route checks its caller only after it (the
#: e-card routes check the device proof in the route itself).
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/ecards/{ecard_id}/tokens"): {"purpose": "transport"},
    ("POST", "/v1/ecards/{ecard_id}/offline-credentials"): {},
    ("POST", "/v1/ecards/{ecard_id}/loss-report"): {},
    ("POST", "/v1/verify"): {"token": "SSC1:AAAA", "purpose": "transport"},
}


@dataclass
class World:
    client: TestClient
    services: Services
    phone: Phone
    params: dict[str, str]
    lost_ecard: str
    bearers: dict[str, dict[str, str]]


def _token(services: Services, kind: ClientKind, **kw: Any) -> tuple[str, str]:
    signer = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    registered = services.clients.register(
        kind=kind,
        display_name=f"matrix {kind.value}",
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
            signer,
            client_id=registered.client_id,
            audience=services.clients.token_endpoint,
            now=now,
        ),
        scope=None,
        now=now,
    )
    return registered.client_id, answer.access_token


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("authz")
    services = registry_services(
        Settings(
            database_url=f"sqlite:///{tmp / 'cardsvc.db'}",
            key_dir=tmp / "keys",
            key_passphrase="test passphrase",  # type: ignore[arg-type]
            issuer="https://issuer.test",
        )
    )
    client = TestClient(create_app(services.settings, services=services))
    holder, other = active_holder(client, services), active_holder(client, services)
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    lost = activate(client, services, other, phone)
    bearers: dict[str, dict[str, str]] = {}
    for caller, kind, kw in (
        ("admin", ClientKind.OPERATOR, {"role": Role.ADMIN}),
        ("clerk", ClientKind.OPERATOR, {"role": Role.CLERK}),
        ("auditor", ClientKind.OPERATOR, {"role": Role.AUDITOR}),
        ("terminal", ClientKind.TERMINAL, {}),
        ("partner", ClientKind.PARTNER, {"purposes": frozenset({"transport"})}),
        ("suspended", ClientKind.OPERATOR, {"role": Role.CLERK}),
    ):
        client_id, token = _token(services, kind, **kw)
        bearers[caller] = {"Authorization": f"Bearer {token}"}
        if caller == "suspended":
            services.clients.set_active(client_id, active=False)
    expired = issue_access_token(
        services.keys,
        issuer=services.settings.issuer,
        subject="matrix-expired-clerk",
        kind="operator",
        scopes=frozenset({"persons:read", "cards:read"}),
        now=services.clock() - timedelta(hours=1),
    )
    bearers["expired"] = {"Authorization": f"Bearer {expired}"}
    shards = client.get("/v1/status-lists").json()["items"]
    params = {
        "person_id": holder.person_id,
        "card_number": holder.card_number,
        "ecard_id": str(ecard["ecard_id"]),
        "shard": str(shards[0]["shard"]),
        "ref": str(uuid.uuid4()),  # no conflict: an allowed caller gets 404
        "code": "0000-0000-0000",  # no such receipt: 404 for everyone
    }
    yield World(client, services, phone, params, str(lost["ecard_id"]), bearers)
    services.engine.dispose()


def _send(world: World, method: str, template: str, caller: str) -> Any:
    params = dict(world.params)
    if template.endswith("/loss-report"):
        params["ecard_id"] = world.lost_ecard
    path = template.format(**params)
    headers: dict[str, str] = {}
    if caller == "holder":
        headers["DPoP"] = world.phone.proof(world.services, world.client, method, path)
    elif caller != "none":
        headers.update(world.bearers[caller])
    if method == "GET":
        return world.client.get(path, headers=headers)
    body = BODIES.get((method, template), {})
    return world.client.request(method, path, json=body, headers=headers)


def _check(answer: Any, expected: str, where: str) -> None:
    status = answer.status_code
    shown = f"{where}: {status} {answer.text[:160]}"
    if expected == "2xx":
        assert 200 <= status < 300, shown
    elif expected == "ok":
        assert status not in (401, 403), shown
    else:
        assert status == int(expected), shown
        assert answer.headers["content-type"] == "application/problem+json", shown


def test_every_operation_of_the_document_has_a_row(world: World) -> None:
    document = world.client.get("/openapi.json").json()
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert operations - set(MATRIX) == set(), "operations without a row in authz_matrix.py"
    assert set(MATRIX) - operations == set(), "rows for operations the document lacks"
    assert all(len(answers) == len(CALLERS) for answers in MATRIX.values())


@pytest.mark.parametrize(("method", "path"), list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_each_caller_gets_its_answer(world: World, method: str, path: str) -> None:
    for caller, expected in zip(CALLERS, MATRIX[(method, path)], strict=True):
        _check(_send(world, method, path, caller), expected, f"{method} {path} as {caller}")


def test_the_readme_shows_the_matrix() -> None:
    assert render_table() in README.read_text(encoding="utf-8")
