"""schemas/: every signed vector against the code, every document against its schema."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from cardsvc.core.keys import b64url_decode
from cardsvc.core.qrtoken import Purpose
from tests.core.test_qrtoken import TYPICAL, token

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_vectors", SCHEMAS / "generate_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


GENERATOR = _load_generator()
VECTOR_FILES = sorted((SCHEMAS / "vectors").rglob("*.json"))


def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.schema.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=REGISTRY, format_checker=FormatChecker())


def jws_claims(token: str) -> Any:
    return json.loads(b64url_decode(token.split(".")[1]))


def test_there_are_vectors_of_every_kind() -> None:
    kinds = {p.parent.name for p in VECTOR_FILES}
    assert kinds == {
        "trust-list",
        "card-document",
        "qr-token",
        "status-list",
        "device-bound",
        "bundle",
    }
    assert len(VECTOR_FILES) == len(GENERATOR.INTENT)


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_vector_gives_its_expected_outcome(path: Path) -> None:
    vector = json.loads(path.read_text())
    observed = GENERATOR.verify_vector(vector["kind"], vector)
    assert observed == vector["expected"]
    intent = GENERATOR.INTENT[f"{path.parent.name}/{path.stem}"]
    assert GENERATOR._outcome(observed) == intent


def test_vectors_are_reproducible(tmp_path: Path) -> None:
    GENERATOR.write(tmp_path)
    for path in VECTOR_FILES:
        rel = path.relative_to(SCHEMAS / "vectors")
        assert (tmp_path / rel).read_text() == path.read_text(), f"{rel} is stale: regenerate"


def valid_outputs(kind: str) -> Iterator[Any]:
    for path in VECTOR_FILES:
        vector = json.loads(path.read_text())
        if vector["kind"] == kind and vector["expected"]["valid"]:
            yield vector


def test_trust_lists_match_their_schema() -> None:
    check = validator("trust-list")
    for vector in valid_outputs("trust-list"):
        check.validate(jws_claims(vector["input"]))
        check.validate(vector["expected"]["result"])


def test_card_documents_match_their_schema() -> None:
    check = validator("card-document")
    for vector in valid_outputs("card-document"):
        check.validate(jws_claims(vector["input"]))
        check.validate(vector["expected"]["result"])
    bad = {**GENERATOR.card_document().to_claims(), "extra": 1}
    assert not check.is_valid(bad)


@pytest.mark.parametrize("purpose", list(Purpose))
def test_qr_token_views_match_their_schema(purpose: Purpose) -> None:
    check = validator("qr-token")
    view = token(purpose).to_json(status_base_uri="https://issuer.test/v1/status-lists")
    check.validate(view)
    if purpose is Purpose.TRANSPORT:
        leaked = {**view, "attributes": {**view["attributes"], "name": "张三"}}
        assert not check.is_valid(leaked), "schema must refuse identity in a transport token"
    assert set(view["attributes"]) == {a.name.lower() for a in TYPICAL[purpose]}


def test_qr_token_vector_results_match_the_schema() -> None:
    check = validator("qr-token")
    for vector in valid_outputs("qr-token"):
        check.validate(vector["expected"]["result"])


def test_status_list_tokens_match_their_schema() -> None:
    check = validator("status-list-token")
    for vector in valid_outputs("status-list"):
        check.validate(jws_claims(vector["input"]))
    validator("status-reference").validate(GENERATOR.card_document().to_claims()["status"])


def test_device_bound_vector_results_match_their_schema() -> None:
    check = validator("device-bound-token")
    valid = list(valid_outputs("device-bound"))
    assert {v["expected"]["result"]["purpose"] for v in valid} == {"identity", "transport"}
    for vector in valid:
        check.validate(vector["expected"]["result"])
    leaked = {**valid[0]["expected"]["result"], "purpose": "transport"}
    assert not check.is_valid(leaked), "schema must refuse identity in a transport token"


def test_bundle_claims_match_their_schema() -> None:
    check = validator("verifier-bundle")
    valid = list(valid_outputs("bundle"))
    assert len(valid) == 4  # full, delta, entry delta; and the SM2 full bundle
    for vector in valid:
        check.validate(jws_claims(vector["input"]))
        for held in vector.get("previous", []):
            check.validate(jws_claims(held))
    assert not check.is_valid({**jws_claims(valid[0]["input"]), "base": "full"})
    (patched,) = (v for v in valid if "status_patches" in jws_claims(v["input"]))
    claims = jws_claims(patched["input"])
    assert not check.is_valid({**claims, "base": None}), "patches only in a delta"
    (patch,) = claims["status_patches"].values()
    for bad in ({**patch, "sha256": patch["sha256"][:-1]}, {**patch, "extra": 1},
                {"entries": patch["entries"]}, {**patch, "entries": "AA=="}):  # fmt: skip
        bad_claims = {**claims, "status_patches": {"https://issuer.test/x/0": bad}}
        assert not check.is_valid(bad_claims), bad


def test_every_bundle_failure_names_its_reason() -> None:
    """Each must-fail bundle vector, and the held bundle it is offered to."""
    failing = {
        path.stem: json.loads(path.read_text())
        for path in VECTOR_FILES
        if path.parent.name == "bundle" and not json.loads(path.read_text())["expected"]["valid"]
    }
    assert {name: GENERATOR._outcome(v["expected"]) for name, v in failing.items()} == {
        "tampered": "signature",
        "truncated": "DecodeError",
        "rolled-back": "bundle-rollback",
        "foreign-key": "key-unknown",
        "patch-digest": "patch-digest",
        "patch-index": "patch-index",
        "patch-status": "patch-status",
        "patch-base": "patch-base",
    }


@pytest.mark.parametrize(
    "name",
    ["tampered", "truncated", "rolled-back", "foreign-key", "patch-digest", "patch-index",
     "patch-status", "patch-base"],
)  # fmt: skip
def test_an_offline_verifier_keeps_its_bundle_when_offered_a_bad_one(name: str) -> None:
    from datetime import UTC, datetime

    from cardsvc.core.errors import CoreError
    from cardsvc.core.keys import VerifyingKey
    from cardsvc.core.verifier import OfflineVerifier

    vector = json.loads((SCHEMAS / "vectors" / "bundle" / f"{name}.json").read_text())
    now = datetime.fromtimestamp(vector["now"], UTC)
    gate = OfflineVerifier(VerifyingKey.from_jwk(vector["root_jwk"]))
    held = [GENERATOR.bundle_token(1), *vector.get("previous", [])]
    for earlier in dict.fromkeys(held):
        gate.update(earlier, now=now)
    version = gate.bundle.version if gate.bundle else None
    with pytest.raises(CoreError):
        gate.update(vector["input"], now=now)
    assert gate.bundle is not None and gate.bundle.version == version
