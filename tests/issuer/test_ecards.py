"""E-cards: activation, device binding, QR tokens, online verification, following the card."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from cardsvc.core.jws import verify_jws
from cardsvc.core.keys import KeyPurpose, b64url_decode, b64url_encode
from cardsvc.core.qrtoken import (
    PURPOSE_ATTRIBUTES,
    Attribute,
    Purpose,
    QrToken,
    encode_qr_token,
)
from cardsvc.core.signing import LocalSigner
from cardsvc.core.statuslist import Status, verify_status_list_token
from cardsvc.db.models import ECard, audit_leaves
from cardsvc.ecards.activation import CHIP_AUTH_CONTEXT
from cardsvc.ecards.errors import TokenRejectedError
from cardsvc.ecards.render import MAX_VERSION, qr_code
from cardsvc.registry.db import read_session
from cardsvc.replay import RedisReplayCache
from cardsvc.services import Services
from tests.issuer.conftest import STORE_PARAMS, shared_redis
from tests.issuer.ecard_helpers import (
    Holder,
    Phone,
    activate,
    activation_code,
    active_holder,
    mint,
    verify,
)
from tests.issuer.registry_helpers import assert_problem, bearer, registry_services


@pytest.fixture
def services(settings: Any) -> Iterator[Services]:
    services = registry_services(settings)
    yield services
    services.engine.dispose()


@pytest.fixture
def client(services: Services) -> TestClient:
    from cardsvc.api.app import create_app

    return TestClient(create_app(services.settings, services=services))


@pytest.fixture
def holder(client: TestClient, services: Services) -> Holder:
    return active_holder(client, services, birth_date=None)


def one_token(
    client: TestClient,
    services: Services,
    ecard: dict[str, Any],
    phone: Phone,
    purpose: str = "transport",
) -> str:
    response = mint(client, services, ecard["ecard_id"], phone, purpose)
    assert response.status_code == 200, response.json()
    return str(response.json()["tokens"][0]["token"])


# -- activation with a code --------------------------------------------------------------


def test_code_activation_binds_the_device_and_signs_a_credential(
    client: TestClient, services: Services, holder: Holder
) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    assert ecard["card_number"] == holder.card_number
    assert ecard["card_status"] == ecard["ecard_status"] == "valid"
    ecard_key = services.keys.signing_record(KeyPurpose.ECARD, now=services.clock()).key
    credential = verify_jws(ecard["credential"], typ="ssc-ecard+jwt", key_for=lambda _h: ecard_key)
    assert credential.claims["cnf"]["jwk"]["x"] == phone.jwk["x"]
    assert credential.claims["status"]["status_list"]["idx"] == ecard["status"]["idx"]
    # The code was single use.
    again = client.post(
        "/v1/ecards/activations",
        json={"citizen_id": holder.person["citizen_id"], "code": "x", "device_jwk": phone.jwk},
    )
    assert assert_problem(again, 422)["reason"] == "used"


def test_guessed_codes_lock_after_the_limit(
    client: TestClient, services: Services, holder: Holder
) -> None:
    code = activation_code(client, services, holder)
    body = {"citizen_id": holder.person["citizen_id"], "device_jwk": Phone().jwk}
    limit = services.settings.ecard_activation_attempts
    for attempt in range(1, limit):
        wrong = client.post("/v1/ecards/activations", json={**body, "code": "AAAA-AAAA-AAAA"})
        problem = assert_problem(wrong, 422)
        assert (problem["reason"], problem["attempts_left"]) == ("wrong-code", limit - attempt)
    last = client.post("/v1/ecards/activations", json={**body, "code": "AAAA-AAAA-AAAA"})
    assert assert_problem(last, 403)["reason"] == "locked"
    right = client.post("/v1/ecards/activations", json={**body, "code": code})
    assert assert_problem(right, 403)["reason"] == "locked"
    # An operator issues a new code: it works.
    fresh = activation_code(client, services, holder)
    ok = client.post("/v1/ecards/activations", json={**body, "code": fresh.lower()})
    assert ok.status_code == 201, ok.json()


def test_codes_expire_and_need_an_active_card(
    client: TestClient, services: Services, holder: Holder
) -> None:
    code = activation_code(client, services, holder)
    start = services.clock()
    services.clock = lambda: (
        start + services.ecard_activation.policy.code_lifetime + timedelta(seconds=1)
    )
    late = client.post(
        "/v1/ecards/activations",
        json={"citizen_id": holder.person["citizen_id"], "code": code, "device_jwk": Phone().jwk},
    )
    assert assert_problem(late, 422)["reason"] == "expired"
    services.clock = lambda: start
    unknown = client.post(
        "/v1/ecards/activations",
        json={"citizen_id": "11010519491231002X", "code": code, "device_jwk": Phone().jwk},
    )
    assert assert_problem(unknown, 422)["reason"] == "no-code"
    from tests.issuer.registry_helpers import enrol, issue

    pending = enrol(client, services)
    issue(client, services, pending["id"])
    refused = client.post(
        f"/v1/persons/{pending['id']}/ecard-activation-codes", headers=bearer(services)
    )
    assert assert_problem(refused, 409)["type"].endswith("no-active-card")


def test_a_private_or_malformed_device_key_is_refused(
    client: TestClient, services: Services, holder: Holder
) -> None:
    code = activation_code(client, services, holder)
    from cardsvc.core.keys import public_jwk
    from cardsvc.core.sm2 import Sm2PrivateKey

    sm2_phone = public_jwk(Sm2PrivateKey.generate().public_key())  # phones sign ES256 only
    for jwk in ({**Phone().jwk, "d": "AAAA"}, {"kty": "EC", "crv": "P-384"}, {}, sm2_phone):
        response = client.post(
            "/v1/ecards/activations",
            json={"citizen_id": holder.person["citizen_id"], "code": code, "device_jwk": jwk},
        )
        assert assert_problem(response, 422)["type"].endswith("invalid-device-key")


# -- activation at a counter ----------------------------------------------------------


def _challenge(client: TestClient, services: Services, holder: Holder) -> tuple[str, bytes]:
    response = client.post(
        "/v1/ecards/counter-challenges",
        json={"card_number": holder.card_number},
        headers=bearer(services),
    )
    assert response.status_code == 200, response.json()
    return response.json()["challenge"], b64url_decode(response.json()["nonce"])


def _counter(
    client: TestClient,
    services: Services,
    challenge: str,
    signature: bytes,
    phone: Phone,
    *,
    pin_verified: bool = True,
) -> Any:
    return client.post(
        "/v1/ecards/counter-activations",
        json={
            "challenge": challenge,
            "chip_signature": b64url_encode(signature),
            "pin_verified": pin_verified,
            "device_jwk": phone.jwk,
        },
        headers=bearer(services),
    )


def test_counter_activation_is_proven_by_the_chip(
    client: TestClient, services: Services, holder: Holder
) -> None:
    from reader_agent.card.constants import AUTH_CONTEXT

    assert AUTH_CONTEXT == CHIP_AUTH_CONTEXT
    phone = Phone()
    challenge, nonce = _challenge(client, services, holder)
    clone = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    forged = _counter(client, services, challenge, clone.sign(CHIP_AUTH_CONTEXT + nonce), phone)
    assert assert_problem(forged, 422)["reason"] == "chip-signature"
    no_pin = _counter(
        client,
        services,
        challenge,
        holder.chip.sign(CHIP_AUTH_CONTEXT + nonce),
        phone,
        pin_verified=False,
    )
    assert assert_problem(no_pin, 422)["reason"] == "pin"
    wrong_context = _counter(client, services, challenge, holder.chip.sign(nonce), phone)
    assert assert_problem(wrong_context, 422)["reason"] == "chip-signature"
    answer = holder.chip.sign(CHIP_AUTH_CONTEXT + nonce)
    ok = _counter(client, services, challenge, answer, phone)
    assert ok.status_code == 201, ok.json()
    assert ok.json()["ecard_status"] == "valid"
    replayed = _counter(client, services, challenge, answer, phone)
    assert assert_problem(replayed, 422)["reason"] == "challenge-replayed"
    tampered = challenge[:-2] + ("AA" if not challenge.endswith("AA") else "BB")
    bad = _counter(client, services, tampered, answer, phone)
    assert assert_problem(bad, 422)["reason"] == "challenge"


def test_a_wallet_activated_at_a_counter_finds_its_ecard_by_its_key(
    client: TestClient, services: Services, holder: Holder
) -> None:
    phone, stranger = Phone(), Phone()
    path = "/v1/ecards/device-binding"

    def ask(who: Phone, proof: str | None = None) -> Any:
        proof = proof or who.proof(services, client, "GET", path)
        return client.get(path, headers={"DPoP": proof})

    # Before the counter binds the key: 404, but only after a good proof.
    assert assert_problem(ask(phone), 404)["type"].endswith("ecard-not-found")
    assert assert_problem(client.get(path), 401)["reason"] == "proof-missing"
    no_key = phone.proof(services, client, "GET", path).split(".")
    header = b64url_encode(b'{"typ":"dpop+jwt","alg":"ES256"}')
    assert assert_problem(ask(phone, ".".join([header, *no_key[1:]])), 401)["reason"] == (
        "proof-key")  # fmt: skip
    challenge, nonce = _challenge(client, services, holder)
    bound = _counter(client, services, challenge, holder.chip.sign(CHIP_AUTH_CONTEXT + nonce),
                     phone)  # fmt: skip
    assert bound.status_code == 201, bound.json()
    found = ask(phone)
    assert found.status_code == 200, found.json()
    body = found.json()
    assert body["ecard_id"] == bound.json()["ecard_id"] and body["ecard_status"] == "valid"
    ecard_key = services.keys.signing_record(KeyPurpose.ECARD, now=services.clock()).key
    credential = verify_jws(body["credential"], typ="ssc-ecard+jwt", key_for=lambda _h: ecard_key)
    assert credential.claims["cnf"]["jwk"]["x"] == phone.jwk["x"]
    # A proof that names the phone's key but is signed by another: refused, nothing said.
    forged = stranger.proof(services, client, "GET", path).split(".")
    named = phone.proof(services, client, "GET", path).split(".")
    refused = ask(phone, ".".join([named[0], forged[1], forged[2]]))
    assert assert_problem(refused, 401)["reason"] == "proof-signature"
    # A stranger's own key: nothing bound to it.
    assert assert_problem(ask(stranger), 404)["type"].endswith("ecard-not-found")
    # The same phone scanned again at the counter: said, and nothing is replaced.
    challenge, nonce = _challenge(client, services, holder)
    again = _counter(client, services, challenge, holder.chip.sign(CHIP_AUTH_CONTEXT + nonce),
                     phone)  # fmt: skip
    assert assert_problem(again, 409)["type"].endswith("device-already-bound")
    assert ask(phone).json()["ecard_id"] == body["ecard_id"]


# -- device binding and proofs --------------------------------------------------------------


def test_binding_a_new_device_deactivates_the_old_one(
    client: TestClient, services: Services, holder: Holder
) -> None:
    old_phone, new_phone = Phone(), Phone()
    old = activate(client, services, holder, old_phone)
    old_token = one_token(client, services, old, old_phone)
    new = activate(client, services, holder, new_phone)
    assert new["ecard_id"] != old["ecard_id"]
    refused = mint(client, services, old["ecard_id"], old_phone)
    assert assert_problem(refused, 409)["ecard_status"] == "invalid"
    assert verify(client, services, old_token).json()["check"] == "ecard-revoked"
    assert verify(client, services, one_token(client, services, new, new_phone)).status_code == 200


def test_device_proofs_replayed_stale_or_foreign_are_refused(
    client: TestClient, services: Services, holder: Holder
) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    path = f"/v1/ecards/{ecard['ecard_id']}/tokens"

    def ask(proof: str | None) -> Any:
        headers = {"DPoP": proof} if proof is not None else {}
        return client.post(path, json={"purpose": "culture"}, headers=headers)

    proof = phone.proof(services, client, "POST", path)
    assert ask(proof).status_code == 200
    reasons = {
        "replayed": ask(proof),
        "stale": ask(
            phone.proof(
                services, client, "POST", path, iat=int(services.clock().timestamp()) - 3600
            )
        ),
        "foreign": ask(Phone().proof(services, client, "POST", path)),
        "url": ask(phone.proof(services, client, "POST", path, htu="https://evil.test" + path)),
        "method": ask(phone.proof(services, client, "GET", path)),
        "nonce": ask(phone.proof(services, client, "POST", path, nonce="A" * 40)),
        "missing": ask(None),
        "garbage": ask("not.a.proof"),
    }
    got = {name: assert_problem(r, 401)["reason"] for name, r in reasons.items()}
    assert got == {
        "replayed": "proof-replayed",
        "stale": "proof-stale",
        "foreign": "proof-key",
        "url": "proof-url",
        "method": "proof-method",
        "nonce": "proof-nonce",
        "missing": "proof-missing",
        "garbage": "proof-malformed",
    }


def test_a_proof_signed_by_another_key_without_a_jwk_header(services: Services) -> None:
    from cardsvc.core.signing import sign_jws
    from cardsvc.ecards.errors import DeviceProofError
    from cardsvc.ecards.proofs import verify_device_proof
    from cardsvc.replay import MemoryReplayCache

    bound, other = Phone(), Phone()
    now = services.clock()
    claims = {
        "htm": "POST",
        "htu": "u",
        "iat": int(now.timestamp()),
        "nonce": services.ecard_tokens.nonce(now=now),
        "jti": "j" * 16,
    }
    proof = sign_jws({"typ": "dpop+jwt"}, claims, other.signer)
    with pytest.raises(DeviceProofError) as info:
        verify_device_proof(
            proof,
            key=bound.signer.verifying_key(),
            htm="POST",
            htu="u",
            now=now,
            max_age=timedelta(seconds=60),
            sealer=services.ecard_tokens.sealer,
            replay=MemoryReplayCache(),
        )
    assert info.value.reason == "proof-signature"


# -- QR tokens --------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", [p.name.lower() for p in Purpose])
def test_each_purpose_discloses_only_its_claims_and_fits_version_10(
    client: TestClient, services: Services, holder: Holder, purpose: str
) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    token = one_token(client, services, ecard, phone, purpose)
    assert qr_code(token).version <= MAX_VERSION
    answer = verify(client, services, token, purpose)
    assert answer.status_code == 200, answer.json()
    claims = answer.json()["claims"]
    allowed = {a.name.lower() for a in PURPOSE_ATTRIBUTES[Purpose[purpose.upper()]]}
    assert set(claims["attributes"]) <= allowed
    assert claims["ecard"] == ecard["ecard_ref"] and claims["jti"]
    assert claims["status"]["status_list"]["idx"] == ecard["status"]["idx"]
    if purpose == "transport":
        assert set(claims["attributes"]) == {"concession", "concession_until"}
    if purpose == "identity":
        assert claims["attributes"]["id_no"] == holder.person["citizen_id"]
        assert (
            claims["attributes"]["name"] == holder.person["name"]
            and "photo_ref" in claims["attributes"]
        )
    assert claims["exp"] - claims["iat"] == services.settings.ecard_token_lifetime_seconds


def test_png_and_svg_rendering(client: TestClient, services: Services, holder: Holder) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    png = mint(client, services, ecard["ecard_id"], phone, "identity", format="png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    svg = mint(client, services, ecard["ecard_id"], phone, "fee", format="svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg.content


def test_offline_batch_windows_are_consecutive_and_each_valid_only_in_its_window(
    client: TestClient, services: Services, holder: Holder
) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    response = mint(client, services, ecard["ecard_id"], phone, "tourism", offline=True)
    tokens = response.json()["tokens"]
    lifetime = services.settings.ecard_token_lifetime_seconds
    assert len(tokens) == int(services.settings.ecard_offline_hours * 3600) // lifetime
    for before, after in itertools.pairwise(tokens):
        assert before["valid_until"] == after["valid_from"]
    trust = _trust(services)
    third = tokens[2]["token"]
    start = services.clock()
    for offset, check in ((0, "issued-in-future"), (lifetime * 4, "expired")):
        with pytest.raises(TokenRejectedError) as info:
            services.verifier.verify(
                third,
                purpose=Purpose.TOURISM,
                trust_list=trust,
                now=start + timedelta(seconds=offset),
            )
        assert info.value.check == check
    services.verifier.verify(
        third,
        purpose=Purpose.TOURISM,
        trust_list=trust,
        now=start + timedelta(seconds=lifetime * 2 + 1),
    )


def _trust(services: Services) -> Any:
    now = services.clock()
    publication = services.trust_list.current(now=now)
    return services.verifier.trust_list(now=now, published=(publication.etag, publication.body))


# -- online verification --------------------------------------------------------------------


@pytest.fixture(params=STORE_PARAMS)
def replay_store(request: pytest.FixtureRequest, services: Services) -> str:
    if request.param != "memory":
        redis, prefix = shared_redis(request, request.param)
        store = RedisReplayCache(redis, prefix=prefix)
        services.use_stores(replay=store, rate_limiter=services.rate_limiter)
    return str(request.param)


def _forged(services: Services, signer: LocalSigner, **changes: Any) -> str:
    now = services.clock().replace(microsecond=0)
    fields: dict[str, Any] = dict(
        issuer=services.settings.issuer,
        purpose=Purpose.TRANSPORT,
        ecard_ref=b"\x01" * 8,
        jti=b"\x02" * 8,
        issued_at=now,
        expires_at=now + timedelta(seconds=60),
        status_shard=0,
        status_idx=1,
        attributes={Attribute.CONCESSION: 0},
    )
    fields.update(changes)
    return encode_qr_token(QrToken(**fields), signer)


def test_verify_names_each_failed_check(
    client: TestClient, services: Services, holder: Holder, replay_store: str
) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    token = one_token(client, services, ecard, phone)
    ok = verify(client, services, token)
    assert ok.status_code == 200 and ok.json()["valid"] is True
    now = services.clock()
    status_key = services.keys.signer(KeyPurpose.STATUS_LIST, now=now)
    ecard_signer = services.keys.signer(KeyPurpose.ECARD, now=now)
    stranger = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    fresh = one_token(client, services, ecard, phone)
    flipped = fresh[:40] + ("A" if fresh[40] != "A" else "B") + fresh[41:]
    jwt_like = ecard["credential"]
    cases = {
        "replayed": (token, "transport"),
        "purpose": (fresh, "identity"),
        "key-unknown": (_forged(services, stranger), "transport"),
        "key-purpose": (_forged(services, status_key), "transport"),
        "expired": (
            _forged(
                services,
                ecard_signer,
                issued_at=now - timedelta(minutes=5),
                expires_at=now - timedelta(minutes=4),
            ),
            "transport",
        ),
        "issued-in-future": (
            _forged(
                services,
                ecard_signer,
                issued_at=now + timedelta(minutes=5),
                expires_at=now + timedelta(minutes=6),
            ),
            "transport",
        ),
        "ecard-unknown": (_forged(services, ecard_signer), "transport"),
        "prefix": ("XYZ1:" + fresh[5:], "transport"),
        "size": ("SSC1:" + "A" * 5000, "transport"),
        "format": (fresh[: len(fresh) // 2], "transport"),
    }
    for expected, (text, purpose) in cases.items():
        problem = assert_problem(verify(client, services, text, purpose), 422)
        assert problem["check"] == expected, (expected, problem)
    assert verify(client, services, jwt_like).json()["check"] == "prefix"
    assert verify(client, services, flipped).json()["check"] in {"signature", "format"}
    # Still valid after the failures above: they burnt nothing.
    assert verify(client, services, fresh).status_code == 200
    assert verify(client, services, fresh).json()["check"] == "replayed"
    assert replay_store in {"memory", "redis", "redis-cluster"}


def test_verify_needs_the_verify_scope(client: TestClient, services: Services) -> None:
    response = client.post(
        "/v1/verify", json={"token": "SSC1:AA", "purpose": "transport"}, headers=bearer(services)
    )
    assert_problem(response, 403)


@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_tokens_are_rejected_with_a_named_check(services: Services, data: Any) -> None:
    now = services.clock()
    signer = services.keys.signer(KeyPurpose.ECARD, now=now)
    token = _forged(services, signer, jti=data.draw(st.binary(min_size=8, max_size=8)))
    trust = _trust(services)
    kind = data.draw(st.sampled_from(["truncate", "flip", "random"]))
    if kind == "truncate":
        text = token[: data.draw(st.integers(0, len(token) - 1))]
    elif kind == "flip":
        pos = data.draw(st.integers(5, len(token) - 1))
        char = data.draw(st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"))
        text = token[:pos] + char + token[pos + 1 :]
    else:
        text = data.draw(st.text(max_size=300))
    if text == token:
        return
    with pytest.raises(TokenRejectedError) as info:
        services.verifier.verify(text, purpose=Purpose.TRANSPORT, trust_list=trust, now=now)
    assert info.value.check in {
        "prefix",
        "format",
        "size",
        "signature",
        "claims",
        "key-unknown",
        "key-purpose",
        "key-window",
        "expired",
        "issued-in-future",
        "purpose",
        "ecard-unknown",
        "algorithm",
    }


# -- the e-card follows the card ------------------------------------------------------------


def _status_entry(client: TestClient, services: Services, ecard: dict[str, Any]) -> Status:
    uri = ecard["status"]["uri"]
    shard = int(uri.rsplit("/", 1)[1])
    body = client.get(f"/v1/status-lists/{shard}").text
    now = services.clock()
    key = services.keys.signing_record(KeyPurpose.STATUS_LIST, now=now).key
    from cardsvc.core.trustlist import TrustedKey, TrustList

    trust = TrustList(
        issuer=services.settings.issuer,
        sequence=1,
        issued_at=now - timedelta(hours=1),
        expires_at=now + timedelta(hours=1),
        keys=(
            TrustedKey(
                key=key,
                purpose=KeyPurpose.STATUS_LIST,
                not_before=now - timedelta(days=2),
                not_after=now + timedelta(days=2),
            ),
        ),
    )
    status_list = verify_status_list_token(
        body, trust_list=trust, expected_sub=uri, now=now, leeway=timedelta(seconds=30)
    )
    return Status(status_list.status_list.get(ecard["status"]["idx"]))


def _change(client: TestClient, services: Services, number: str, action: str) -> None:
    response = client.post(
        f"/v1/cards/{number}/status-changes",
        json={"action": action, "reason": "test"},
        headers=bearer(services),
    )
    assert response.status_code == 200, response.json()


def _ecard_state(services: Services, ecard_id: str) -> str:
    with read_session(services.engine) as session:
        row = session.get(ECard, uuid.UUID(ecard_id))
        assert row is not None
        return row.state


def test_a_temporary_loss_suspends_the_ecard_and_resume_restores_it(
    client: TestClient, services: Services, holder: Holder
) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    assert _status_entry(client, services, ecard) is Status.VALID
    token = one_token(client, services, ecard, phone)
    _change(client, services, holder.card_number, "report_temporary_loss")
    assert _status_entry(client, services, ecard) is Status.SUSPENDED
    assert verify(client, services, token).json()["check"] == "card-suspended"
    assert mint(client, services, ecard["ecard_id"], phone).status_code == 409
    _change(client, services, holder.card_number, "resume")
    assert _status_entry(client, services, ecard) is Status.VALID
    assert verify(client, services, token).status_code == 200


@pytest.mark.parametrize("how", ["report_loss", "revoke", "reissue", "death"])
def test_the_end_of_the_card_revokes_the_ecard(
    client: TestClient, services: Services, holder: Holder, how: str
) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    token = one_token(client, services, ecard, phone)
    assert _status_entry(client, services, ecard) is Status.VALID
    if how == "reissue":
        response = client.post(
            f"/v1/cards/{holder.card_number}/reissue",
            json={"reason": "damaged"},
            headers=bearer(services),
        )
        assert response.status_code == 201, response.json()
    elif how == "death":
        response = client.post(
            f"/v1/persons/{holder.person_id}/death",
            json={"died_on": str(services.clock().date()), "reason": "registry"},
            headers=bearer(services, frozenset({"persons:write", "cards:write"})),
        )
        assert response.status_code == 200, response.json()
    else:
        _change(client, services, holder.card_number, how)
    assert _ecard_state(services, ecard["ecard_id"]) == "revoked"
    assert _status_entry(client, services, ecard) is Status.INVALID
    assert verify(client, services, token).json()["check"] == "card-revoked"
    assert mint(client, services, ecard["ecard_id"], phone).status_code == 409
    with services.engine.connect() as conn:
        subjects = conn.scalars(
            select(audit_leaves.c.subject).where(audit_leaves.c.kind == "ecard.revoked")
        ).all()
    assert subjects == [f"ecard:{ecard['ecard_id']}"], "the e-card's end is in the audit log"


def test_other_processes_see_ecard_changes_through_sync(
    client: TestClient, services: Services, holder: Holder
) -> None:
    phone = Phone()
    ecard = activate(client, services, holder, phone)
    other = Services.from_settings(services.settings)
    try:
        shard = int(ecard["status"]["uri"].rsplit("/", 1)[1])
        other.status.publication(shard, now=services.clock())  # loads the shard
        assert other.status.status_of(shard, ecard["status"]["idx"]) is Status.VALID
        _change(client, services, holder.card_number, "report_temporary_loss")
        other.status.sync()
        assert other.status.status_of(shard, ecard["status"]["idx"]) is Status.SUSPENDED
    finally:
        other.engine.dispose()


def test_a_persons_ecards_for_the_counter(
    client: TestClient, services: Services, holder: Holder
) -> None:
    from tests.issuer.registry_helpers import CLERK

    path = f"/v1/persons/{holder.person_id}/ecards"
    assert client.get(path, headers=bearer(services, CLERK)).json() == {"items": []}
    first = activate(client, services, holder, Phone())
    second = activate(client, services, holder, Phone())
    items = client.get(path, headers=bearer(services, CLERK)).json()["items"]
    assert [(i["ecard_id"], i["state"]) for i in items] == [
        (second["ecard_id"], "active"), (first["ecard_id"], "replaced")]  # fmt: skip
    assert {i["card_number"] for i in items} == {holder.card_number}
    assert all(i["activated_via"] == "code" and "device_jwk" not in i for i in items)
    unknown = client.get("/v1/persons/00000000-0000-4000-8000-000000000000/ecards",
                         headers=bearer(services, CLERK))  # fmt: skip
    assert_problem(unknown, 404)
