"""Rate limits on every endpoint that does expensive work, over HTTP against the app.

For each endpoint class (verify, token, wallet and counter activation, bundle deltas):
under the limit the normal answer; over it 429 problem+json with an integer
``Retry-After`` and the limit in the body; another client (or address, or ID number) is
not affected; the next window admits again. Each runs on the in-process limiter and on
real Redis, with the limiter's injectable clock (no sleeping). The limits are small
``RateLimits`` set here; the source address is the ASGI client's (``TestClient(client=)``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

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
from cardsvc.ratelimit import WINDOW_SECONDS, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from cardsvc.services import Services, utcnow
from cardsvc.settings import RateLimits, Settings
from tests.issuer.conftest import STORE_PARAMS, shared_redis
from tests.issuer.ecard_helpers import Phone, activate, activation_code, active_holder, mint
from tests.issuer.registry_helpers import assert_problem, bearer, registry_services

LIMITS = RateLimits(
    verify_per_client=3,
    token_per_address=4,
    token_per_client=2,
    activation_per_address=4,
    activation_per_citizen_id=2,
    counter_activation_per_client=2,
    bundle_delta_per_client=2,
    bundle_delta_per_address=2,
)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PATHS = pytest.mark.parametrize("fast_verify", [True, False], ids=["fast-path", "route"])


class Clock:
    """The limiters' clock: one second into a window, moved by the test."""

    def __init__(self) -> None:
        self.now = (time.time() // WINDOW_SECONDS + 1) * WINDOW_SECONDS + 1

    def __call__(self) -> float:
        return self.now

    def next_window(self) -> None:
        self.now += WINDOW_SECONDS


@dataclass
class World:
    services: Services
    clock: Clock

    def client(self, address: str = "192.0.2.1", *, fast_verify: bool = True) -> TestClient:
        app = create_app(self.services.settings, services=self.services, fast_verify=fast_verify)
        return TestClient(app, client=(address, 50000))


@pytest.fixture(params=STORE_PARAMS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    services = registry_services(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'cardsvc.db'}",
            key_dir=tmp_path / "keys",
            key_passphrase="test passphrase",  # type: ignore[arg-type]
            issuer="https://issuer.test",
            rate_limits=LIMITS,
        )
    )
    clock = Clock()
    limiter: RateLimiter
    if request.param == "memory":
        limiter = MemoryRateLimiter(clock=clock)
    else:
        store, prefix = shared_redis(request, request.param)
        limiter = RedisRateLimiter(store, prefix=prefix + "rate:", clock=clock)
    services.use_stores(replay=services.replay, rate_limiter=limiter)
    yield World(services, clock)
    services.engine.dispose()


def assert_limited(answer: Any, limit: int, counted_per: str) -> None:
    """429 problem+json, ``Retry-After`` in whole seconds to the window's end (the clock
    stands one second into it), the limit and what it counts in the body."""
    problem = assert_problem(answer, 429)
    assert problem["type"].endswith("/rate-limited")
    assert answer.headers["Retry-After"] == str(WINDOW_SECONDS - 1)
    assert problem["retry_after"] == WINDOW_SECONDS - 1
    assert problem["limit_per_minute"] == limit
    assert problem["counted_per"] == counted_per


def verifier(services: Services, subject: str, kind: str = "terminal") -> dict[str, str]:
    token = issue_access_token(
        services.keys,
        issuer=services.settings.issuer,
        subject=subject,
        kind=kind,
        scopes=frozenset({"verify"}),
        now=services.clock(),
    )
    return {"Authorization": f"Bearer {token}"}


# -- verify ------------------------------------------------------------------------------


@PATHS
def test_verify_is_limited_per_client_of_every_kind(world: World, fast_verify: bool) -> None:
    client = world.client(fast_verify=fast_verify)
    bad = {"token": "SSC1:AAAA", "purpose": "transport"}
    counter = verifier(world.services, "counter-7")
    for _ in range(LIMITS.verify_per_client):
        assert client.post("/v1/verify", json=bad, headers=counter).status_code == 422
    assert_limited(client.post("/v1/verify", json=bad, headers=counter), 3, "client")
    # An operator is counted on its own key: not affected.
    operator = verifier(world.services, "clerk-9", kind="operator")
    assert client.post("/v1/verify", json=bad, headers=operator).status_code == 422
    world.clock.next_window()
    assert client.post("/v1/verify", json=bad, headers=counter).status_code == 422


@PATHS
def test_a_verify_refused_for_the_rate_does_not_consume_the_token(
    world: World, fast_verify: bool
) -> None:
    services = world.services
    client = world.client(fast_verify=fast_verify)
    holder = active_holder(client, services, birth_date=None)
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    answer = mint(client, services, ecard["ecard_id"], phone, "transport")
    good = {"token": answer.json()["tokens"][0]["token"], "purpose": "transport"}
    counter = verifier(services, "counter-8")
    bad = {"token": "SSC1:AAAA", "purpose": "transport"}
    for _ in range(LIMITS.verify_per_client):
        client.post("/v1/verify", json=bad, headers=counter)
    assert_limited(client.post("/v1/verify", json=good, headers=counter), 3, "client")
    world.clock.next_window()
    accepted = client.post("/v1/verify", json=good, headers=counter)
    assert accepted.status_code == 200, accepted.json()
    assert accepted.json()["valid"] is True


# -- token ---------------------------------------------------------------------------------


def _register(services: Services) -> tuple[str, LocalSigner]:
    signer = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    registered = services.clients.register(
        kind=ClientKind.OPERATOR,
        role=Role.CLERK,
        display_name="rate test",
        jwk=public_jwk(signer.private_key.public_key()),
        created_by="test",
        now=utcnow(),
    )
    return registered.client_id, signer


def _ask(client: TestClient, services: Services, client_id: str, signer: LocalSigner) -> Any:
    assertion = make_client_assertion(
        signer, client_id=client_id, audience=services.clients.token_endpoint, now=utcnow()
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    return client.post("/v1/oauth/token", content=urlencode(form), headers=FORM)


def test_token_requests_are_limited_per_address_before_any_check(world: World) -> None:
    services = world.services
    client_id, signer = _register(services)
    attacker = world.client("198.51.100.7")
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
    garbage = urlencode({**form, "client_assertion": "x.y.z"})
    for _ in range(LIMITS.token_per_address):
        answer = attacker.post("/v1/oauth/token", content=garbage, headers=FORM)
        assert assert_problem(answer, 401)["error"] == "invalid_client"
    assert_limited(attacker.post("/v1/oauth/token", content=garbage, headers=FORM), 4, "address")
    # Refused before anything is read: even a valid assertion from that address.
    assert_limited(_ask(attacker, services, client_id, signer), 4, "address")
    # Another address is not affected.
    assert _ask(world.client("203.0.113.5"), services, client_id, signer).status_code == 200
    world.clock.next_window()
    assert _ask(attacker, services, client_id, signer).status_code == 200


def test_token_requests_are_limited_per_verified_client(world: World) -> None:
    services = world.services
    client_id, signer = _register(services)
    other_id, other_signer = _register(services)
    # Assertions that name the client but are signed by someone else: refused unverified,
    # from several addresses, and none of them counts against the client's own budget.
    forger = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    for n in range(2 * LIMITS.token_per_client):
        forged = _ask(world.client(f"198.51.100.{n + 10}"), services, client_id, forger)
        assert assert_problem(forged, 401)["error"] == "invalid_client"
    office = world.client("203.0.113.9")
    for _ in range(LIMITS.token_per_client):
        assert _ask(office, services, client_id, signer).status_code == 200
    # Over its own limit from a fresh address: counted per client.
    assert_limited(_ask(world.client("203.0.113.10"), services, client_id, signer), 2, "client")
    assert _ask(office, services, other_id, other_signer).status_code == 200  # another client
    world.clock.next_window()
    assert _ask(office, services, client_id, signer).status_code == 200


# -- activation ---------------------------------------------------------------------------


def _activate(client: TestClient, citizen_id: str, code: str) -> Any:
    return client.post(
        "/v1/ecards/activations",
        json={"citizen_id": citizen_id, "code": code, "device_jwk": Phone().jwk},
    )


def test_code_activation_is_limited_per_address_and_per_id_number(world: World) -> None:
    services = world.services
    setup = world.client("192.0.2.200")
    holders = [active_holder(setup, services, birth_date=None) for _ in range(3)]
    codes = [activation_code(setup, services, h) for h in holders]
    ids = [str(h.person["citizen_id"]) for h in holders]
    wrong = "AAAA-AAAA-AAAA"
    phone_a, phone_b = world.client("198.51.100.1"), world.client("198.51.100.2")

    def wrong_code(answer: Any, left: int) -> None:
        problem = assert_problem(answer, 422)
        assert (problem["reason"], problem["attempts_left"]) == ("wrong-code", left)

    # Per ID number: two tries a minute, then 429 from any address.
    wrong_code(_activate(phone_a, ids[0], wrong), 4)
    wrong_code(_activate(phone_a, ids[0], wrong), 3)
    assert_limited(_activate(phone_a, ids[0], wrong), 2, "citizen ID")
    # Per address: the fourth request of phone A was admitted, the fifth is not.
    wrong_code(_activate(phone_a, ids[1], wrong), 4)
    assert_limited(_activate(phone_a, ids[2], codes[2]), 4, "address")
    assert_limited(_activate(phone_b, ids[0], codes[0]), 2, "citizen ID")
    # Another address and another ID number: not affected.
    created = _activate(phone_b, ids[2], codes[2])
    assert created.status_code == 201, created.json()
    world.clock.next_window()
    # The refused requests used none of the code's attempts: two wrong so far, one more
    # leaves two.
    wrong_code(_activate(phone_a, ids[0], wrong), 2)
    assert _activate(phone_a, ids[0], codes[0]).status_code == 201


def test_counter_activation_is_limited_per_terminal(world: World) -> None:
    services = world.services
    client = world.client()
    body = {"challenge": "bogus", "chip_signature": "AAAA", "pin_verified": True,
            "device_jwk": Phone().jwk}  # fmt: skip

    def terminal(subject: str) -> dict[str, str]:
        return bearer(services, frozenset({"cards:personalize"}), subject=subject)

    for _ in range(LIMITS.counter_activation_per_client):
        answer = client.post("/v1/ecards/counter-activations", json=body, headers=terminal("t1"))
        assert assert_problem(answer, 422)["reason"] == "challenge"
    limited = client.post("/v1/ecards/counter-activations", json=body, headers=terminal("t1"))
    assert_limited(limited, 2, "client")
    other = client.post("/v1/ecards/counter-activations", json=body, headers=terminal("t2"))
    assert assert_problem(other, 422)["reason"] == "challenge"
    world.clock.next_window()
    again = client.post("/v1/ecards/counter-activations", json=body, headers=terminal("t1"))
    assert assert_problem(again, 422)["reason"] == "challenge"


# -- bundle deltas ----------------------------------------------------------------------------


def test_bundle_deltas_are_limited_per_client_or_per_address(world: World) -> None:
    services = world.services
    anonymous = world.client("198.51.100.20")
    delta = "/v1/bundles/latest?since=0"
    for _ in range(LIMITS.bundle_delta_per_address):
        assert anonymous.get(delta).status_code == 200
    assert_limited(anonymous.get(delta), 2, "address")
    # A token that does not authenticate is no client: counted on the address.
    assert_limited(anonymous.get(delta, headers={"Authorization": "Bearer x.y.z"}), 2, "address")
    # The full bundle is one cached publication: not counted.
    assert anonymous.get("/v1/bundles/latest").status_code == 200
    # The same address with a partner's token: that client's own budget.
    metro = verifier(services, "metro", kind="partner")
    for _ in range(LIMITS.bundle_delta_per_client):
        assert anonymous.get(delta, headers=metro).status_code == 200
    assert_limited(anonymous.get(delta, headers=metro), 2, "client")
    museum = verifier(services, "museum", kind="partner")
    assert anonymous.get(delta, headers=museum).status_code == 200
    assert world.client("198.51.100.21").get(delta).status_code == 200  # another address
    world.clock.next_window()
    assert anonymous.get(delta).status_code == 200
    assert anonymous.get(delta, headers=metro).status_code == 200


# -- a token naming no registered client ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/terminal-certificates", None, {}),
        ("/v1/transactions",
         {"nonce": "A" * 22, "data": "AA", "counter": 1, "card_signature": "A" * 86,
          "terminal_signature": "A" * 86, "terminal_certificate": "x"},
         {"Idempotency-Key": "0123456789abcdef0123"}),
        ("/v1/transactions/batches",
         {"terminal_certificate": "x", "records": [{"seq": 1, "void": "torn"}]}, {}),
    ],
    ids=["terminal-certificates", "transactions", "batches"],
)  # fmt: skip
def test_a_signed_token_for_no_registered_client_is_unauthenticated(
    world: World, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> None:
    scopes = frozenset({"transactions:write"})
    ghost = bearer(world.services, scopes, subject="never-registered")
    answer = world.client().post(path, json=body, headers={**ghost, **headers})
    problem = assert_problem(answer, 401)
    assert problem["type"].endswith("/unauthenticated")
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert "never-registered" not in answer.text
