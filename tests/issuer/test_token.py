"""The token endpoint: client credentials with private_key_jwt, on both databases."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cardsvc.api.app import create_app
from cardsvc.auth.clients import ClientKind
from cardsvc.auth.scopes import ROLE_SCOPES
from cardsvc.auth.tokens import verify_access_token
from cardsvc.core.assertion import ASSERTION_TYPE, make_client_assertion
from cardsvc.core.keys import public_jwk
from cardsvc.core.signing import LocalSigner, sign_jws
from cardsvc.db.migrate import upgrade
from cardsvc.db.states import Role
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from tests.issuer.test_cli import CARDSVC, env_for

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def services(settings: Settings) -> Services:
    services = Services.from_settings(settings)
    services.keys.init(now=utcnow() - timedelta(hours=1))
    upgrade(services.engine)
    return services


@pytest.fixture
def client(settings: Settings, services: Services) -> TestClient:
    return TestClient(create_app(settings, services=services))


def register(
    services: Services, kind: ClientKind = ClientKind.OPERATOR, **kw: object
) -> tuple[str, LocalSigner]:
    signer = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    if kind is ClientKind.OPERATOR:
        kw.setdefault("role", Role.CLERK)
    registered = services.clients.register(
        kind=kind,
        display_name="test",
        jwk=public_jwk(signer.private_key.public_key()),
        created_by="test",
        now=utcnow(),
        **kw,  # type: ignore[arg-type]
    )
    return registered.client_id, signer


def ask(client: TestClient, services: Services, assertion: str, **extra: str) -> object:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }
    return client.post("/v1/oauth/token", content=urlencode(form), headers={"Content-Type": FORM})


def assertion_for(services: Services, client_id: str, signer: LocalSigner, **kw: object) -> str:
    kw.setdefault("now", utcnow())
    return make_client_assertion(
        signer,
        client_id=client_id,
        audience=services.clients.token_endpoint,
        **kw,  # type: ignore[arg-type]
    )


def test_operator_gets_a_token_with_its_role_scopes(client: TestClient, services: Services) -> None:
    client_id, signer = register(services)
    response = ask(client, services, assertion_for(services, client_id, signer))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    principal = verify_access_token(
        body["access_token"],
        keys=services.keys,
        issuer=services.settings.issuer,
        now=utcnow(),
        leeway=timedelta(seconds=5),
    )
    assert principal.subject == client_id and principal.kind == "operator"
    assert principal.scopes == {s.value for s in ROLE_SCOPES[Role.CLERK]}
    narrow = ask(client, services, assertion_for(services, client_id, signer), scope="persons:read")
    assert narrow.json()["scope"] == "persons:read"


def test_a_replayed_assertion_is_refused(client: TestClient, services: Services) -> None:
    client_id, signer = register(services)
    assertion = assertion_for(services, client_id, signer)
    assert ask(client, services, assertion).status_code == 200
    again = ask(client, services, assertion)
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_client"
    assert "already used" in again.json()["detail"]


def test_bad_credentials_are_invalid_client(client: TestClient, services: Services) -> None:
    client_id, signer = register(services)
    stranger = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    now = utcnow()
    cases = {
        "wrong key": assertion_for(services, client_id, stranger),
        "unknown client": assertion_for(services, "oper-000000000000", signer),
        "expired": assertion_for(services, client_id, signer, now=now - timedelta(minutes=10)),
        "wrong audience": make_client_assertion(
            signer, client_id=client_id, audience="https://elsewhere.test/token", now=now
        ),
        "long-lived": sign_jws(
            {"typ": "JWT"},
            {
                "iss": client_id,
                "sub": client_id,
                "aud": services.clients.token_endpoint,
                "jti": "a" * 16,
                "iat": int(now.timestamp()),
                "exp": int((now + timedelta(hours=1)).timestamp()),
            },
            signer,
        ),
        "no jti": sign_jws(
            {"typ": "JWT"},
            {
                "iss": client_id,
                "sub": client_id,
                "aud": services.clients.token_endpoint,
                "exp": int((now + timedelta(minutes=1)).timestamp()),
            },
            signer,
        ),
        "garbage": "not.a.jwt",
    }
    for name, assertion in cases.items():
        response = ask(client, services, assertion)
        assert response.status_code == 401, name
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["error"] == "invalid_client", name


def test_suspended_clients_and_scopes_beyond_their_grant(
    client: TestClient, services: Services
) -> None:
    client_id, signer = register(services, ClientKind.TERMINAL)
    beyond = ask(
        client, services, assertion_for(services, client_id, signer), scope="clients:admin"
    )
    assert beyond.status_code == 400 and beyond.json()["error"] == "invalid_scope"
    services.clients.set_active(client_id, active=False)
    suspended = ask(client, services, assertion_for(services, client_id, signer))
    assert suspended.status_code == 401 and "suspended" in suspended.json()["detail"]
    services.clients.set_active(client_id, active=True)
    assert ask(client, services, assertion_for(services, client_id, signer)).status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        ("grant_type=password&username=a", FORM, "unsupported_grant_type"),
        ("grant_type=client_credentials", FORM, "invalid_client"),
        ('{"grant_type": "client_credentials"}', "application/json", "invalid_request"),
        ("grant_type=client_credentials&grant_type=client_credentials", FORM, "invalid_request"),
        ("a=" + "x" * 20000, FORM, "invalid_request"),
        ("%ff%fe=\xff", FORM, "invalid_request"),
    ],
)
def test_malformed_requests(client: TestClient, body: str, content_type: str, error: str) -> None:
    response = client.post(
        "/v1/oauth/token",
        content=body.encode("utf-8", "surrogateescape"),
        headers={"Content-Type": content_type},
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["error"] == error


@hsettings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.sampled_from([FORM, "text/plain", "", "application/json"]))
def test_random_bodies_never_500(client: TestClient, body: bytes, content_type: str) -> None:
    response = client.post("/v1/oauth/token", content=body, headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"


def test_cli_registers_clients_and_never_prints_the_private_key(tmp_path: Path) -> None:
    env = env_for(tmp_path, CARDSVC_DEV_MODE="1")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CARDSVC, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    assert run("keys", "init").returncode == 0
    assert run("db", "upgrade").returncode == 0
    key = tmp_path / "clerk.pem"
    made = run(
        "clients", "create", "operator", "Zhang Wei", "--role", "clerk", "--key-out", str(key)
    )
    assert made.returncode == 0, made.stderr
    assert (key.stat().st_mode & 0o777) == 0o600
    assert "PRIVATE KEY" not in made.stdout + made.stderr
    assert "operator" in run("clients", "list").stdout
    bad = run(
        "clients",
        "create",
        "terminal",
        "Counter 1",
        "--role",
        "clerk",
        "--key-out",
        str(tmp_path / "t.pem"),
    )
    assert bad.returncode == 1 and "only operators have roles" in bad.stderr


@pytest.mark.redis
def test_replay_is_refused_across_nodes_sharing_redis(
    settings: Settings, services: Services, redis_client: tuple[object, str]
) -> None:
    from cardsvc.auth.clients import ClientService, OAuthError
    from cardsvc.redisstore import RedisStore
    from cardsvc.replay import RedisReplayCache
    from tests.conftest import REDIS_URL

    _, prefix = redis_client
    nodes = [  # two processes: each its own clients of the one server
        ClientService(
            services.engine,
            services.keys,
            RedisReplayCache(RedisStore(REDIS_URL), prefix=prefix),
            issuer=settings.issuer,
            leeway=timedelta(seconds=30),
        )
        for _ in range(2)
    ]
    client_id, signer = register(services)
    assertion = assertion_for(services, client_id, signer)
    form = {
        "grant_type": "client_credentials",
        "assertion_type": ASSERTION_TYPE,
        "assertion": assertion,
        "scope": None,
        "now": utcnow(),
    }
    assert nodes[0].exchange(**form).access_token  # type: ignore[arg-type]
    with pytest.raises(OAuthError, match="already used"):
        nodes[1].exchange(**form)  # type: ignore[arg-type]
