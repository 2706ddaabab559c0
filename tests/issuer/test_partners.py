"""Partners: registered purposes and rate limit, enforced on both verify paths."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cardsvc.api.app import create_app
from cardsvc.auth.clients import ClientKind
from cardsvc.auth.tokens import verify_access_token
from cardsvc.core.assertion import ASSERTION_TYPE, make_client_assertion
from cardsvc.core.keys import public_jwk
from cardsvc.core.signing import LocalSigner
from cardsvc.errors import CardsvcError
from cardsvc.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from cardsvc.services import Services
from tests.issuer.conftest import STORE_PARAMS, shared_redis
from tests.issuer.ecard_helpers import Phone, activate, active_holder, mint
from tests.issuer.registry_helpers import registry_services


@pytest.fixture
def services(settings: Any) -> Iterator[Services]:
    services = registry_services(settings)
    yield services
    services.engine.dispose()


def partner_token(
    services: Services, purposes: frozenset[str], rate_limit: int | None = None
) -> tuple[str, dict[str, str]]:
    signer = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    client = services.clients.register(
        kind=ClientKind.PARTNER,
        display_name="Metro",
        jwk=public_jwk(signer.private_key.public_key()),
        created_by="test",
        now=services.clock(),
        purposes=purposes,
        rate_limit=rate_limit,
    )
    now = services.clock()
    answer = services.clients.exchange(
        grant_type="client_credentials",
        assertion_type=ASSERTION_TYPE,
        assertion=make_client_assertion(
            signer, client_id=client.client_id, audience=services.clients.token_endpoint, now=now
        ),
        scope="verify",
        now=now,
    )
    return client.client_id, {"Authorization": f"Bearer {answer.access_token}"}


def test_partner_policy_is_stored_and_in_its_token(services: Services) -> None:
    client_id, headers = partner_token(services, frozenset({"transport", "culture"}), 42)
    stored = services.clients.get(client_id)
    assert stored.partner is not None
    assert stored.partner.purposes == {"transport", "culture"}
    assert stored.partner.rate_limit == 42
    principal = verify_access_token(
        headers["Authorization"].split()[1],
        keys=services.keys,
        issuer=services.settings.issuer,
        now=services.clock(),
        leeway=services.leeway,
    )
    assert principal.purposes == {"transport", "culture"}
    assert principal.rate_limit == 42


@pytest.mark.parametrize(
    ("purposes", "rate_limit", "message"),
    [
        (frozenset(), None, "at least one purpose"),
        (frozenset({"gambling"}), None, "unknown purpose gambling"),
        (frozenset({"transport"}), 0, "rate limit"),
    ],
)
def test_bad_partner_policy_refused(
    services: Services, purposes: frozenset[str], rate_limit: int | None, message: str
) -> None:
    with pytest.raises(CardsvcError, match=message):
        partner_token(services, purposes, rate_limit)


def test_only_partners_take_purposes(services: Services) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(CardsvcError, match="only partners"):
        services.clients.register(
            kind=ClientKind.TERMINAL,
            display_name="Counter",
            jwk=public_jwk(key),
            created_by="test",
            now=services.clock(),
            purposes=frozenset({"transport"}),
        )


@pytest.mark.parametrize("fast_verify", [True, False], ids=["fast-path", "route"])
def test_purpose_outside_the_partners_is_forbidden(services: Services, fast_verify: bool) -> None:
    client = TestClient(create_app(services.settings, services=services, fast_verify=fast_verify))
    holder = active_holder(client, services, birth_date=None)
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    _, headers = partner_token(services, frozenset({"transport"}))

    def fresh(purpose: str) -> str:
        answer = mint(client, services, ecard["ecard_id"], phone, purpose)
        assert answer.status_code == 200, answer.json()
        return str(answer.json()["tokens"][0]["token"])

    identity = fresh("identity")
    refused = client.post(
        "/v1/verify", json={"token": identity, "purpose": "identity"}, headers=headers
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["type"].endswith("/purpose-forbidden")
    assert body["purpose"] == "identity"
    assert body["allowed_purposes"] == ["transport"]
    assert "identity" in body["detail"]
    assert "claims" not in body

    ok = client.post(
        "/v1/verify", json={"token": fresh("transport"), "purpose": "transport"}, headers=headers
    )
    assert ok.status_code == 200, ok.json()
    assert ok.json()["purpose"] == "transport"


def test_partner_without_a_stored_policy_may_verify_nothing(services: Services) -> None:
    from cardsvc.auth.tokens import issue_access_token

    token = issue_access_token(
        services.keys,
        issuer=services.settings.issuer,
        subject="part-legacy",
        kind="partner",
        scopes=frozenset({"verify"}),
        now=services.clock(),
    )
    client = TestClient(create_app(services.settings, services=services))
    answer = client.post(
        "/v1/verify",
        json={"token": "SSC1:AAAA", "purpose": "transport"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 403
    assert answer.json()["allowed_purposes"] == []


@pytest.fixture(params=STORE_PARAMS)
def limiter_services(request: pytest.FixtureRequest, services: Services) -> Services:
    if request.param != "memory":
        store, prefix = shared_redis(request, request.param)
        limiter: RateLimiter = RedisRateLimiter(store, prefix=prefix)
    else:
        limiter = MemoryRateLimiter()
    services.use_stores(replay=services.replay, rate_limiter=limiter)
    return services


@pytest.mark.parametrize("fast_verify", [True, False], ids=["fast-path", "route"])
def test_rate_limit_per_partner(limiter_services: Services, fast_verify: bool) -> None:
    services = limiter_services
    client = TestClient(create_app(services.settings, services=services, fast_verify=fast_verify))
    _, metro = partner_token(services, frozenset({"transport"}), rate_limit=3)
    _, museum = partner_token(services, frozenset({"culture"}), rate_limit=3)
    body = {"token": "SSC1:AAAA", "purpose": "transport"}
    statuses = [client.post("/v1/verify", json=body, headers=metro).status_code for _ in range(3)]
    assert 429 not in statuses  # refused tokens, but counted
    limited = client.post("/v1/verify", json=body, headers=metro)
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["type"].endswith("/rate-limited")
    other = client.post("/v1/verify", json={**body, "purpose": "culture"}, headers=museum)
    assert other.status_code != 429  # the limit is per partner


@pytest.mark.parametrize("backend", STORE_PARAMS)
def test_window_resets(request: pytest.FixtureRequest, backend: str) -> None:
    now = [1000.0]
    limiter: MemoryRateLimiter | RedisRateLimiter
    if backend != "memory":
        store, prefix = shared_redis(request, backend)
        limiter = RedisRateLimiter(store, prefix=prefix, clock=lambda: now[0])
    else:
        limiter = MemoryRateLimiter(clock=lambda: now[0])
    assert limiter.hit("a", limit=2) is None
    assert limiter.hit("a", limit=2) is None
    assert limiter.known_refusal("a", limit=2) is None
    assert limiter.hit("a", limit=2) == 20  # window 960..1020
    assert limiter.known_refusal("a", limit=2) == 20  # refused again without counting
    assert limiter.hit("b", limit=2) is None
    assert limiter.known_refusal("b", limit=2) is None
    now[0] = 1020.0
    assert limiter.known_refusal("a", limit=2) is None
    assert limiter.hit("a", limit=2) is None


def test_an_operator_changes_a_partners_policy_and_the_change_is_audited(
    services: Services,
) -> None:
    from cardsvc.auth.partners import change_partner_policy

    client_id, _ = partner_token(services, frozenset({"transport"}), 42)
    policy = change_partner_policy(
        services.engine,
        client_id,
        purposes={"transport", "culture"},
        actor="operator-7",
        now=services.clock(),
    )
    assert policy.purposes == {"transport", "culture"} and policy.rate_limit == 42
    policy = change_partner_policy(
        services.engine, client_id, rate_limit=90, actor="operator-7", now=services.clock()
    )
    stored = services.clients.get(client_id).partner
    assert stored is not None and stored == policy
    assert (stored.purposes, stored.rate_limit) == ({"transport", "culture"}, 90)

    leaf = services.audit.leaf_of(f"client:{client_id}", "client.policy_changed")
    assert leaf is not None
    data = services.audit.leaf_data(leaf).decode()
    assert '"before":{"purposes":["culture","transport"],"rate_limit":42}' in data
    assert '"after":{"purposes":["culture","transport"],"rate_limit":90}' in data
    assert "operator-7" in data


def test_policy_changes_are_checked_and_only_for_partners(services: Services) -> None:
    from cardsvc.auth.partners import PartnerNotFoundError, change_partner_policy

    client_id, _ = partner_token(services, frozenset({"transport"}), 42)
    now = services.clock()
    for kwargs, message in (
        ({"purposes": {"gambling"}}, "unknown purpose"),
        ({"purposes": set()}, "at least one purpose"),
        ({"rate_limit": 0}, "rate limit"),
        ({}, "give the new purposes"),
    ):
        with pytest.raises(CardsvcError, match=message):
            change_partner_policy(services.engine, client_id, actor="op", now=now, **kwargs)
    stored = services.clients.get(client_id).partner
    assert stored is not None and (stored.purposes, stored.rate_limit) == ({"transport"}, 42)
    assert services.audit.leaf_of(f"client:{client_id}", "client.policy_changed") is None

    terminal = services.clients.register(
        kind=ClientKind.TERMINAL,
        display_name="Counter 1",
        jwk=public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()),
        created_by="test",
        now=now,
    )
    for other in (terminal.client_id, "part-unknown"):
        with pytest.raises(PartnerNotFoundError):
            change_partner_policy(services.engine, other, rate_limit=5, actor="op", now=now)


def test_policy_through_the_cli(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cardsvc.cli.main import app

    settings = services.settings
    monkeypatch.setenv("CARDSVC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CARDSVC_KEY_DIR", str(settings.key_dir))
    monkeypatch.setenv("CARDSVC_KEY_PASSPHRASE", "test passphrase")
    monkeypatch.setenv("CARDSVC_ISSUER", settings.issuer)
    client_id, _ = partner_token(services, frozenset({"transport"}), 42)
    result = CliRunner().invoke(
        app,
        ["clients", "policy", client_id, "--purpose", "museum", "--rate-limit", "7"],
    )
    assert result.exit_code != 0  # an unknown purpose changes nothing
    result = CliRunner().invoke(
        app,
        ["clients", "policy", client_id, "--purpose", "culture", "--purpose", "tourism",
         "--rate-limit", "7"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "purposes culture,tourism; 7/min" in result.output
    assert services.audit.leaf_of(f"client:{client_id}", "client.policy_changed") is not None


# -- least privilege: a partner verifies, it reads nothing of the registry -------------

REGISTRY_READS = (
    "/v1/cards",
    "/v1/cards/{card}",
    "/v1/cards/{card}/events",
    "/v1/persons/{person}/cards",
    "/v1/persons/{person}",
    "/v1/persons",
)


def registry_paths(client: TestClient, services: Services) -> list[str]:
    from tests.issuer.registry_helpers import enrol, issue

    person = enrol(client, services)
    card = issue(client, services, person["id"])
    return [p.format(card=card["card_number"], person=person["id"]) for p in REGISTRY_READS]


def assert_refused(answer: Any) -> None:
    assert answer.status_code == 403, (answer.status_code, answer.text[:200])
    assert answer.headers["content-type"] == "application/problem+json"
    # Nothing of the registry leaks into the refusal.
    assert "person_id" not in answer.text and "status_index" not in answer.text


def test_a_partner_token_reads_nothing_of_the_registry(services: Services) -> None:
    client = TestClient(create_app(services.settings, services=services))
    paths = registry_paths(client, services)
    signer = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    partner = services.clients.register(
        kind=ClientKind.PARTNER,
        display_name="Metro",
        jwk=public_jwk(signer.private_key.public_key()),
        created_by="test",
        now=services.clock(),
        purposes=frozenset({"transport"}),
    )
    assert partner.scopes == {"verify"}
    now = services.clock()
    answer = services.clients.exchange(  # no scope asked: everything it holds
        grant_type="client_credentials",
        assertion_type=ASSERTION_TYPE,
        assertion=make_client_assertion(
            signer, client_id=partner.client_id, audience=services.clients.token_endpoint, now=now
        ),
        scope=None,
        now=now,
    )
    assert answer.scope == "verify"
    headers = {"Authorization": f"Bearer {answer.access_token}"}
    for path in paths:
        assert_refused(client.get(path, headers=headers))
    # What verification needs stays open: the public bundle and POST /v1/verify.
    assert client.get("/v1/bundles/latest").status_code == 200
    verify = client.post(
        "/v1/verify", json={"token": "SSC1:AAAA", "purpose": "transport"}, headers=headers
    )
    assert verify.status_code not in (401, 403), verify.json()


@pytest.mark.parametrize("kind", [ClientKind.PARTNER, ClientKind.TERMINAL])
def test_machine_clients_may_not_be_given_registry_scopes(
    services: Services, kind: ClientKind
) -> None:
    extra = {"purposes": frozenset({"transport"})} if kind is ClientKind.PARTNER else {}
    for scope in ("cards:read", "persons:read"):
        with pytest.raises(CardsvcError, match=f"may not hold {scope}"):
            services.clients.register(
                kind=kind,
                display_name="Greedy",
                jwk=public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()),
                created_by="test",
                now=services.clock(),
                scopes=frozenset({"verify", scope}),
                **extra,  # type: ignore[arg-type]
            )


def test_the_cli_refuses_a_partner_with_registry_scopes(
    services: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from typer.testing import CliRunner

    from cardsvc.cli.main import app

    settings = services.settings
    monkeypatch.setenv("CARDSVC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CARDSVC_KEY_DIR", str(settings.key_dir))
    monkeypatch.setenv("CARDSVC_KEY_PASSPHRASE", "test passphrase")
    monkeypatch.setenv("CARDSVC_ISSUER", settings.issuer)
    refused = CliRunner().invoke(app, [
        "clients", "create", "partner", "Metro", "--purpose", "transport",
        "--scope", "verify", "--scope", "cards:read", "--key-out", str(tmp_path / "k1.pem"),
    ])  # fmt: skip
    assert refused.exit_code != 0
    assert services.clients.list() == []
    made = CliRunner().invoke(app, [
        "clients", "create", "partner", "Metro", "--purpose", "transport",
        "--key-out", str(tmp_path / "k2.pem"),
    ])  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "[verify; purposes transport" in made.output


@pytest.mark.parametrize("kind", [ClientKind.PARTNER, ClientKind.TERMINAL])
def test_stored_registry_scopes_of_an_old_client_give_no_access(
    services: Services, kind: ClientKind
) -> None:
    """A row written when partners and terminals could hold cards:read keeps no access:
    the kind's allowed set bounds what its tokens carry and what the API accepts."""
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from cardsvc.auth.tokens import issue_access_token
    from cardsvc.db.models import ClientRow

    client = TestClient(create_app(services.settings, services=services))
    paths = registry_paths(client, services)
    signer = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    extra = {"purposes": frozenset({"transport"})} if kind is ClientKind.PARTNER else {}
    registered = services.clients.register(
        kind=kind,
        display_name="Old",
        jwk=public_jwk(signer.private_key.public_key()),
        created_by="test",
        now=services.clock(),
        **extra,  # type: ignore[arg-type]
    )
    with Session(services.engine) as session, session.begin():
        session.execute(
            update(ClientRow)
            .where(ClientRow.client_id == registered.client_id)
            .values(scopes="cards:read persons:read verify")
        )
    assert "cards:read" not in services.clients.get(registered.client_id).scopes

    def exchange(scope: str | None) -> Any:
        now = services.clock()
        return services.clients.exchange(
            grant_type="client_credentials",
            assertion_type=ASSERTION_TYPE,
            assertion=make_client_assertion(
                signer,
                client_id=registered.client_id,
                audience=services.clients.token_endpoint,
                now=now,
            ),
            scope=scope,
            now=now,
        )

    assert "cards:read" not in exchange(None).scope.split()
    with pytest.raises(CardsvcError, match="may not have cards:read"):
        exchange("cards:read")
    # A token already issued with the scope (before the fix) is narrowed when checked.
    old_token = issue_access_token(
        services.keys,
        issuer=services.settings.issuer,
        subject=registered.client_id,
        kind=kind.value,
        scopes=frozenset({"cards:read", "persons:read", "verify"}),
        now=services.clock(),
    )
    for path in paths:
        assert_refused(client.get(path, headers={"Authorization": f"Bearer {old_token}"}))
