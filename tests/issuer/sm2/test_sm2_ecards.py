"""tests/issuer/test_ecards.py with every key SM2 (see conftest), and the keys published."""

from __future__ import annotations

from fastapi.testclient import TestClient

from cardsvc.core.keys import KeyPurpose
from cardsvc.core.sm2 import SM2SM3
from cardsvc.services import Services
from tests.issuer.test_ecards import *  # noqa: F403

del test_each_purpose_discloses_only_its_claims_and_fits_version_10  # noqa: F821


def test_every_published_key_is_sm2(client: TestClient, services: Services) -> None:
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    issuing = {p.value for p in KeyPurpose if p is not KeyPurpose.ROOT}
    assert {k["purpose"] for k in keys} == issuing
    assert {(k["kty"], k["crv"], k["alg"]) for k in keys} == {("EC", "SM2", SM2SM3)}
    assert services.keys.root_key().alg == SM2SM3
