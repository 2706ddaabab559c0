"""Helpers of the e-card tests: a holder with an active card, a phone, device proofs."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cardsvc.core.keys import public_jwk
from cardsvc.core.signing import LocalSigner, sign_jws
from cardsvc.services import Services
from tests.issuer.registry_helpers import bearer, enrol, issue


@dataclass
class Phone:
    """A phone holding an ES256 device key, making RFC 9449-shaped proofs."""

    signer: LocalSigner = field(
        default_factory=lambda: LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    )

    @property
    def jwk(self) -> dict[str, str]:
        return public_jwk(self.signer.private_key.public_key())

    def proof(
        self,
        services: Services,
        client: TestClient,
        method: str,
        path: str,
        *,
        iat: int | None = None,
        nonce: str | None = None,
        jti: str | None = None,
        htu: str | None = None,
    ) -> str:
        if nonce is None:
            nonce = client.get("/v1/ecards/nonce").json()["nonce"]
        claims = {
            "htm": method,
            "htu": htu or services.settings.issuer + path,
            "iat": iat if iat is not None else int(services.clock().timestamp()),
            "nonce": nonce,
            "jti": jti or secrets.token_urlsafe(12),
        }
        token = sign_jws({"typ": "dpop+jwt", "jwk": self.jwk}, claims, self.signer)
        # sign_jws adds kid; a DPoP proof carries the jwk itself, which is fine either way.
        return token


@dataclass
class Holder:
    person: dict[str, Any]
    card: dict[str, Any]
    chip: LocalSigner

    @property
    def person_id(self) -> str:
        return str(self.person["id"])

    @property
    def card_number(self) -> str:
        return str(self.card["card_number"])


def active_holder(client: TestClient, services: Services, **fields: Any) -> Holder:
    person = enrol(client, services, **fields)
    card = issue(client, services, person["id"])
    chip = LocalSigner(ec.generate_private_key(ec.SECP256R1()))
    response = client.post(
        f"/v1/cards/{card['card_number']}/personalization",
        json={"chip_jwk": public_jwk(chip.private_key.public_key())},
        headers=bearer(services),
    )
    assert response.status_code == 200, response.json()
    return Holder(person=person, card=response.json()["card"], chip=chip)


def activation_code(client: TestClient, services: Services, holder: Holder) -> str:
    response = client.post(
        f"/v1/persons/{holder.person_id}/ecard-activation-codes", headers=bearer(services)
    )
    assert response.status_code == 201, response.json()
    return str(response.json()["code"])


def activate(
    client: TestClient, services: Services, holder: Holder, phone: Phone
) -> dict[str, Any]:
    code = activation_code(client, services, holder)
    response = client.post(
        "/v1/ecards/activations",
        json={"citizen_id": holder.person["citizen_id"], "code": code, "device_jwk": phone.jwk},
    )
    assert response.status_code == 201, response.json()
    ecard: dict[str, Any] = response.json()
    return ecard


def mint(
    client: TestClient,
    services: Services,
    ecard_id: str | uuid.UUID,
    phone: Phone,
    purpose: str = "transport",
    **body: Any,
) -> Any:
    path = f"/v1/ecards/{ecard_id}/tokens"
    return client.post(
        path,
        json={"purpose": purpose, **body},
        headers={"DPoP": phone.proof(services, client, "POST", path)},
    )


VERIFY_SCOPES = frozenset({"verify"})


def verify(client: TestClient, services: Services, token: str, purpose: str = "transport") -> Any:
    return client.post(
        "/v1/verify",
        json={"token": token, "purpose": purpose},
        headers=bearer(services, VERIFY_SCOPES, subject="partner-1"),
    )
