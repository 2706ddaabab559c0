"""Hypothesis driven by the app's OpenAPI document: no request gets a 500.

Every operation is called with generated path parameters, query strings and bodies
(well-typed from the schema's property names, mistyped, unknown fields, malformed JSON,
huge bodies) and with no token, a garbage token, an expired token, a token without the
needed scope, or a valid one. Every answer must be below 500, and every error must be
problem+json.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import (
    AUDITOR,
    CLERK,
    bearer,
    client,
    enrol,
    issue,
    personalize,
    services,
    unique_citizen_id,
)

__all__ = ["client", "services"]
OAUTH = "/v1/oauth/"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
text_ids = st.sampled_from(
    [unique_citizen_id(), "110101199003074478", "11010519491231002x", "", "٣" * 18]
) | st.text(max_size=40)


def operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    spec = client.get("/openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
    ]


def body_strategy(op: dict[str, Any], spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    ref = (
        op.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
        .get("$ref")
    )
    names: list[str] = []
    if ref:
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
        names = list(schema.get("properties", {}))
    field_values = st.one_of(
        text_ids,
        json_values,
        st.sampled_from(
            ["M", "F", "2020-02-30", "1990-01-01", "revoke", "resume", "report_loss", "x" * 600]
        ),
    )
    shaped = (
        st.fixed_dictionaries({}, optional=dict.fromkeys(names, field_values))
        if names
        else st.just({})
    )
    return st.one_of(
        shaped.map(lambda d: ("json", d)),
        st.tuples(shaped, st.dictionaries(st.text(max_size=8), json_values, max_size=2)).map(
            lambda t: ("json", {**t[0], **t[1]})
        ),
        json_values.map(lambda v: ("json", v)),
        st.binary(max_size=64).map(lambda b: ("raw", b)),
        st.just(("raw", b'{"name": ')),
        st.just(("raw", b"[" * 10_000)),
        st.just(("raw", b"x" * 70_000)),
        st.just(("none", None)),
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_no_generated_request_gets_a_500(client: TestClient, services: Services) -> None:
    spec = client.get("/openapi.json").json()
    person = enrol(client, services)
    card = issue(client, services, person["id"])
    personalize(client, services, card["card_number"])
    tokens = {
        "none": {},
        "garbage": {"Authorization": "Bearer not.a.token"},
        "expired": bearer(services, now=utcnow() - timedelta(hours=2)),
        "no-scope": bearer(services, frozenset()),
        "clerk": bearer(services, CLERK),
        "auditor": bearer(services, AUDITOR, subject="auditor-1"),
    }
    path_values = {
        "person_id": st.sampled_from([person["id"], "00000000-0000-0000-0000-000000000000"])
        | st.text(max_size=40),
        "card_number": st.sampled_from([card["card_number"], "A00000000", "bad number"])
        | st.text(max_size=20),
        "shard": st.sampled_from(["0", "1", "-1", "99999999999999999999"]) | st.text(max_size=10),
        "ecard_id": st.sampled_from(["00000000-0000-0000-0000-000000000000", "x"])
        | st.text(max_size=40),
        "ref": st.sampled_from(["t:00000000-0000-0000-0000-000000000000", "h:" + "0" * 64, "t:x"])
        | st.text(max_size=90),
        "code": st.sampled_from(["0000-0000-0000", "o0il 1111 0000", "x"]) | st.text(max_size=50),
    }

    ops = operations(client)

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        data=st.data(),
        query=st.dictionaries(
            st.sampled_from(["limit", "cursor", "state", "x"]),
            st.sampled_from(["0", "1", "500", "-3", "active", "zzz"]) | st.text(max_size=12),
            max_size=3,
        ),
        token=st.sampled_from(sorted(tokens)),
    )
    def call(data: st.DataObject, query: dict[str, str], token: str) -> None:
        method, path, op = data.draw(st.sampled_from(ops))
        params = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
        path_args = data.draw(st.fixed_dictionaries({p: path_values[p] for p in params}))
        kind, payload = data.draw(body_strategy(op, spec))
        url = path
        for name, value in path_args.items():
            url = url.replace("{" + name + "}", quote(value, safe=""))
        kwargs: dict[str, Any] = {"params": query, "headers": dict(tokens[token])}
        if method in ("POST", "PUT", "PATCH") and kind == "json":
            kwargs["content"] = json.dumps(payload).encode()
            kwargs["headers"]["content-type"] = "application/json"
        elif method in ("POST", "PUT", "PATCH") and kind == "raw":
            kwargs["content"] = payload
            kwargs["headers"]["content-type"] = "application/json"
        response = client.request(method, url, **kwargs)
        assert response.status_code < 500, (method, url, kwargs, response.text)
        # OAuth2 token endpoint errors are RFC 6749 JSON, everything else RFC 9457.
        if response.status_code >= 400 and not path.startswith(OAUTH):
            assert response.headers["content-type"] == "application/problem+json", (
                method,
                url,
                response.text,
            )

    call()


WALLET_PATHS = frozenset(
    {
        "/v1/ecards/activations",
        "/v1/ecards/nonce",
        "/v1/ecards/device-binding",
        "/v1/ecards/{ecard_id}",
        "/v1/ecards/{ecard_id}/tokens",
        "/v1/ecards/{ecard_id}/loss-report",
        "/v1/ecards/{ecard_id}/transactions",
        "/v1/ecards/{ecard_id}/entitlements",
        "/v1/ecards/{ecard_id}/offline-credentials",
    }
)


def test_every_operation_documents_its_models_and_problems(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for method, path, op in operations(client):
        public_document = path in ("/v1/trust-list", "/v1/audit/checkpoint")
        if not path.startswith("/v1/") or public_document or path.startswith(OAUTH):
            continue
        responses = op["responses"]
        assert any(code.startswith("2") for code in responses), (method, path)
        errors = [code for code in responses if code[0] == "4"]
        assert errors, (method, path)
        for code in errors:
            assert "application/problem+json" in responses[code]["content"], (method, path, code)
        if method == "POST":
            # These act on the path or the caller alone: a card, a code, a certificate, a nonce.
            bodiless = (
                "{person_id}/cards",
                "{person_id}/ecard-activation-codes",
                "/v1/terminal-certificates",
                "/v1/transactions/challenges",
            )
            assert "requestBody" in op or path.endswith(bodiless), (method, path)
        # The wallet's e-card endpoints authenticate by activation code or device proof.
        # Status lists and the verifier bundle that aggregates them are public, and so
        # is checking a receipt by its code (nothing personal).
        public = path.startswith(("/v1/status-lists", "/v1/bundles", "/v1/receipts"))
        secured = not public and path not in WALLET_PATHS
        assert ("security" in op) == secured, (method, path)
    assert "Problem" in spec["components"]["schemas"]


def test_huge_and_chunked_bodies_are_413(client: TestClient, services: Services) -> None:
    headers = bearer(services) | {"content-type": "application/json"}
    big = client.post("/v1/persons", content=b"{" + b" " * 70_000 + b"}", headers=headers)
    assert big.status_code == 413
    assert big.headers["content-type"] == "application/problem+json"

    def chunks() -> Any:
        for _ in range(20):
            yield b" " * 8192

    streamed = client.post("/v1/persons", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert streamed.headers["content-type"] == "application/problem+json"
