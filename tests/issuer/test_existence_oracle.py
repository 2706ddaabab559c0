"""No existence oracle on the e-card endpoints: an unknown e-card id and a real one get the
same answer, without credentials and with a proof made by another device (issue 15, part 3).

The answers are compared whole (status and problem document, `instance` aside), so any
difference a caller could read, whatever its wording, fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from cardsvc.services import Services
from tests.issuer.ecard_helpers import Phone, activate, active_holder
from tests.issuer.registry_helpers import client, services

__all__ = ["client", "services"]

UNKNOWN = "00000000-0000-4000-8000-000000000000"
ENDPOINTS = [
    ("GET", "/v1/ecards/{id}", None),
    ("POST", "/v1/ecards/{id}/tokens", {"purpose": "transport"}),
    ("POST", "/v1/ecards/{id}/offline-credentials", {}),
    ("POST", "/v1/ecards/{id}/loss-report", {}),
    ("GET", "/v1/ecards/{id}/transactions", None),
    ("GET", "/v1/ecards/{id}/entitlements", None),
]


@pytest.fixture
def real_ecard(client: TestClient, services: Services) -> str:
    return str(activate(client, services, active_holder(client, services), Phone())["ecard_id"])


def _ask(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None,
    headers: dict[str, str],
) -> tuple[int, dict[str, Any]]:  # fmt: skip
    answer = client.request(method, path, json=body, headers=headers)
    document = answer.json()
    document.pop("instance", None)
    return answer.status_code, document


@pytest.mark.parametrize(("method", "template", "body"), ENDPOINTS)
def test_without_credentials_unknown_and_real_answer_alike(
    client: TestClient, real_ecard: str, method: str, template: str, body: dict[str, Any] | None
) -> None:
    real = _ask(client, method, template.format(id=real_ecard), body, {})
    unknown = _ask(client, method, template.format(id=UNKNOWN), body, {})
    assert real[0] == 401, real
    assert unknown == real


@pytest.mark.parametrize(("method", "template", "body"), ENDPOINTS)
def test_with_another_devices_proof_unknown_and_real_answer_alike(
    client: TestClient, services: Services, real_ecard: str, method: str, template: str,
    body: dict[str, Any] | None,
) -> None:  # fmt: skip
    intruder = Phone()  # a phone bound to no e-card, proving itself correctly

    def ask(ecard_id: str) -> tuple[int, dict[str, Any]]:
        path = template.format(id=ecard_id)
        proof = intruder.proof(services, client, method, path)
        return _ask(client, method, path, body, {"DPoP": proof})

    real, unknown = ask(real_ecard), ask(UNKNOWN)
    assert real[0] == 401 and real[1]["reason"] == "proof-key", real
    assert unknown == real


def test_the_holders_own_device_still_gets_in(
    client: TestClient, services: Services
) -> None:
    phone = Phone()
    ecard = activate(client, services, active_holder(client, services), phone)["ecard_id"]
    path = f"/v1/ecards/{ecard}"
    answer = client.get(path, headers={"DPoP": phone.proof(services, client, "GET", path)})
    assert answer.status_code == 200, answer.json()
    assert answer.json()["ecard_id"] == ecard


def _secured(op: dict[str, Any]) -> bool:
    """Needs a credential: a bearer token, or a device proof (the DPoP header)."""
    headers = {p["name"].lower() for p in op.get("parameters", []) if p["in"] == "header"}
    return "security" in op or "dpop" in headers


def test_no_identifier_anywhere_tells_an_anonymous_caller_whether_it_exists(
    client: TestClient, services: Services
) -> None:
    """Every secured operation that takes an identifier in its path answers a caller
    without credentials the same for a real identifier as for an unknown one."""
    holder = active_holder(client, services)
    ecard = activate(client, services, holder, Phone())["ecard_id"]
    real = {"ecard_id": str(ecard), "card_number": holder.card_number,
            "person_id": holder.person_id}  # fmt: skip
    unknown = {"ecard_id": UNKNOWN, "card_number": "Z99999999", "person_id": UNKNOWN}
    spec = client.get("/openapi.json").json()
    checked = []
    for path, item in spec["paths"].items():
        names = {p.strip("{}") for p in path.split("/") if p.startswith("{")}
        if not names or not names <= real.keys():
            continue
        for method, op in item.items():
            if not _secured(op):
                continue
            body = {} if method in ("post", "put", "patch") else None
            seen = _ask(client, method.upper(), path.format(**real), body, {})
            other = _ask(client, method.upper(), path.format(**unknown), body, {})
            assert seen[0] >= 400, (method, path, seen)  # nothing is served anonymously
            assert other == seen, (method, path)
            checked.append((method, path))
    assert len(checked) >= len(ENDPOINTS) + 3, checked  # the e-card family and the registry
