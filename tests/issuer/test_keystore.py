"""The file key store: encryption at rest, permissions, corruption, rotation rules."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cardsvc.core.errors import VerificationError
from cardsvc.core.keys import ISSUING_PURPOSES, KeyPurpose
from cardsvc.core.trustlist import TrustAnchor, TrustList
from cardsvc.errors import (
    CorruptKeyStoreError,
    InsecurePermissionsError,
    KeyStoreError,
    KeyStoreLockedError,
    KeyStoreNotInitialisedError,
    RotationPendingError,
    WrongPassphraseError,
)
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.keystore.service import KeyPolicy, KeyService

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PASS = b"correct horse battery staple"
POLICY = KeyPolicy(cache_ttl=timedelta(minutes=5))


def service(directory: Path, passphrase: bytes | None = PASS) -> KeyService:
    return KeyService(FileKeyBackend(directory, passphrase), POLICY, issuer="https://issuer.test")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    service(tmp_path / "keys").init(now=NOW)
    return tmp_path / "keys"


def test_init_creates_root_and_one_key_per_purpose_with_private_modes(store: Path) -> None:
    records = service(store).records()
    assert sorted(r.purpose for r in records) == sorted([KeyPurpose.ROOT, *ISSUING_PURPOSES])
    assert stat.S_IMODE(store.joinpath("private").stat().st_mode) == 0o700
    for path in [store / "index.json", *store.joinpath("private").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for pem in store.joinpath("private").iterdir():
        assert pem.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert service(store).init(now=NOW) == []  # idempotent


def test_kid_is_the_rfc7638_thumbprint(store: Path) -> None:
    # RFC 7638 section 3.1 example uses RSA; for EC the required members are crv,kty,x,y.
    import base64
    import hashlib

    for record in service(store).records():
        jwk = record.key.jwk()
        canonical = json.dumps(
            {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
        )
        digest = hashlib.sha256(canonical.encode()).digest()
        assert record.kid == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_signing_needs_the_passphrase(store: Path) -> None:
    with pytest.raises(KeyStoreLockedError, match="CARDSVC_KEY_PASSPHRASE"):
        service(store, None).signer(KeyPurpose.ECARD, now=NOW)
    with pytest.raises(WrongPassphraseError):
        service(store, b"wrong").signer(KeyPurpose.ECARD, now=NOW)
    signer = service(store).signer(KeyPurpose.ECARD, now=NOW)
    signer.verifying_key().verify_raw(signer.sign(b"data"), b"data")


def test_missing_store_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreNotInitialisedError, match="cardsvc keys init"):
        service(tmp_path / "none").records()


@pytest.mark.parametrize("target", ["index.json", "private", "private/key"])
def test_files_readable_by_others_are_refused(store: Path, target: str) -> None:
    path = store / target
    if target == "private/key":
        path = store / "private" / f"{service(store).root_key().kid}.pem"
    path.chmod(0o644 if path.is_file() else 0o755)
    with pytest.raises(InsecurePermissionsError) as info:
        keys = service(store)
        keys.records()
        keys.signer(KeyPurpose.ROOT, now=NOW)
    assert info.value.path == path


def test_truncated_or_swapped_key_file_is_corruption_not_wrong_passphrase(store: Path) -> None:
    keys = service(store)
    kid = keys.signing_record(KeyPurpose.ECARD, now=NOW).kid
    other = keys.signing_record(KeyPurpose.STATUS_LIST, now=NOW).kid
    path = store / "private" / f"{kid}.pem"
    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2])
    with pytest.raises(CorruptKeyStoreError, match="modified, truncated or replaced"):
        service(store).signer(KeyPurpose.ECARD, now=NOW)
    path.write_bytes((store / "private" / f"{other}.pem").read_bytes())
    with pytest.raises(CorruptKeyStoreError):
        service(store).signer(KeyPurpose.ECARD, now=NOW)
    path.unlink()
    with pytest.raises(CorruptKeyStoreError, match="missing"):
        service(store).signer(KeyPurpose.ECARD, now=NOW)


@hsettings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(garbage=st.binary(max_size=600))
def test_random_key_file_contents_give_typed_errors(store: Path, garbage: bytes) -> None:
    keys = service(store)
    kid = keys.signing_record(KeyPurpose.ECARD, now=NOW).kid
    path = store / "private" / f"{kid}.pem"
    saved = path.read_bytes()
    try:
        path.write_bytes(garbage)
        with pytest.raises(KeyStoreError):
            service(store).signer(KeyPurpose.ECARD, now=NOW)
    finally:
        path.write_bytes(saved)


@hsettings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(
    index=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=12), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_random_index_contents_give_typed_errors(store: Path, index: bytes) -> None:
    path = store / "index.json"
    saved = path.read_bytes()
    try:
        path.write_bytes(index)
        with pytest.raises(CorruptKeyStoreError):
            service(store).records()
    finally:
        path.write_bytes(saved)


def test_mutated_index_entries_give_typed_errors(store: Path) -> None:
    path = store / "index.json"
    saved = json.loads(path.read_text())
    mutations = [
        lambda d: d["keys"][0].__setitem__("kid", "not-the-thumbprint"),
        lambda d: d["keys"][0].__setitem__("purpose", "world-domination"),
        lambda d: d["keys"][0]["jwk"].__setitem__("crv", "P-384"),
        lambda d: d["keys"][0]["jwk"].__setitem__("x", "AAAA"),
        lambda d: d["keys"][0].__setitem__("activates_at", "yesterday"),
        lambda d: d["keys"][0].__setitem__("activates_at", "2026-01-01T00:00:00"),
        lambda d: d.__setitem__("trust_list_sequence", "7"),
        lambda d: d.__setitem__("version", 99),
        lambda d: d["keys"][0].pop("sha256"),
    ]
    for mutate in mutations:
        doc = json.loads(json.dumps(saved))
        mutate(doc)
        path.write_text(json.dumps(doc))
        with pytest.raises(CorruptKeyStoreError):
            service(store).records()


def test_a_crash_mid_write_leaves_the_old_index(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (store / "index.json").read_bytes()

    def crash(*_args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        service(store).rotate(KeyPurpose.ECARD, now=NOW)
    assert (store / "index.json").read_bytes() == before
    assert not [p for p in store.iterdir() if p.name.endswith(".tmp")]


def test_rotation_publishes_before_signing_and_keeps_old_key_verifiable(store: Path) -> None:
    keys = service(store)
    old = keys.signing_record(KeyPurpose.ECARD, now=NOW)
    result = keys.rotate(KeyPurpose.ECARD, now=NOW)
    new = result.new
    assert new.activates_at == NOW + POLICY.cache_ttl
    # Before activation the old key still signs; the new one is already published.
    assert keys.signing_record(KeyPurpose.ECARD, now=NOW).kid == old.kid
    published = {k.key.kid for k in keys.trusted_keys(now=NOW)}
    assert {old.kid, new.kid} <= published
    after = NOW + POLICY.cache_ttl
    assert keys.signing_record(KeyPurpose.ECARD, now=after).kid == new.kid
    (retired,) = result.retired
    assert retired.retires_at == after
    assert retired.verify_until == after + POLICY.lifetime(KeyPurpose.ECARD) + POLICY.cache_ttl
    still = retired.verify_until - timedelta(seconds=1)
    assert old.kid in {k.key.kid for k in keys.trusted_keys(now=still)}
    gone = retired.verify_until + timedelta(seconds=1)
    assert old.kid not in {k.key.kid for k in keys.trusted_keys(now=gone)}
    with pytest.raises(RotationPendingError):
        keys.rotate(KeyPurpose.ECARD, now=NOW + timedelta(minutes=1))
    with pytest.raises(KeyStoreError, match="re-pinning"):
        keys.rotate(KeyPurpose.ROOT, now=NOW)


def test_exported_trust_list_verifies_against_the_root_and_sequences_grow(store: Path) -> None:
    keys = service(store)
    anchor = TrustAnchor(keys.root_key())
    first = keys.issue_trust_list(now=NOW)
    second = keys.issue_trust_list(now=NOW)
    t1 = anchor.accept(first, now=NOW, leeway=timedelta(seconds=30))
    t2 = anchor.accept(second, now=NOW, leeway=timedelta(seconds=30))
    assert t2.sequence == t1.sequence + 1
    assert {k.purpose for k in t2.keys} == set(ISSUING_PURPOSES)
    with pytest.raises(VerificationError) as info:
        anchor.accept(first, now=NOW, leeway=timedelta(seconds=30))
    assert info.value.check == "rollback"
    ecard = keys.signing_record(KeyPurpose.ECARD, now=NOW)
    assert t2.find(ecard.kid, KeyPurpose.ECARD, now=NOW).key.kid == ecard.kid
    assert isinstance(
        TrustList.verify(second, root=keys.root_key(), now=NOW, leeway=timedelta(0)), TrustList
    )


def _replace_key_file(store: Path, kid: str, pem: bytes) -> None:
    """Swap a private key file and fix its digest in the index, as an operator might."""
    import hashlib

    path = store / "private" / f"{kid}.pem"
    path.write_bytes(pem)
    index = json.loads((store / "index.json").read_text())
    for entry in index["keys"]:
        if entry["kid"] == kid:
            entry["sha256"] = hashlib.sha256(pem).hexdigest()
    (store / "index.json").write_text(json.dumps(index))


def test_foreign_key_files_are_refused_even_with_a_matching_digest(store: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    kid = service(store).signing_record(KeyPurpose.ECARD, now=NOW).kid
    encrypt = serialization.BestAvailableEncryption(PASS)
    pkcs8, pem = serialization.PrivateFormat.PKCS8, serialization.Encoding.PEM
    foreign = {
        "unencrypted": ec.generate_private_key(ec.SECP256R1()).private_bytes(
            pem, pkcs8, serialization.NoEncryption()
        ),
        "P-384": ec.generate_private_key(ec.SECP384R1()).private_bytes(pem, pkcs8, encrypt),
        "Ed25519": ed25519.Ed25519PrivateKey.generate().private_bytes(pem, pkcs8, encrypt),
        "RSA": rsa.generate_private_key(65537, 2048).private_bytes(pem, pkcs8, encrypt),
        "another P-256 key": ec.generate_private_key(ec.SECP256R1()).private_bytes(
            pem, pkcs8, encrypt
        ),
    }
    reasons = {}
    for name, data in foreign.items():
        _replace_key_file(store, kid, data)
        with pytest.raises(CorruptKeyStoreError) as info:
            service(store).signer(KeyPurpose.ECARD, now=NOW)
        reasons[name] = info.value.reason
    assert reasons == {
        "unencrypted": "private key is not encrypted",
        "P-384": "not a P-256 private key",
        "Ed25519": "not a P-256 private key",
        "RSA": "not a P-256 private key",
        "another P-256 key": "private key does not match its kid",
    }


@hsettings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=15)
@given(passphrase=st.binary(min_size=1, max_size=40))
def test_any_other_passphrase_is_refused(store: Path, passphrase: bytes) -> None:
    if passphrase == PASS:
        return
    with pytest.raises(WrongPassphraseError):
        service(store, passphrase).signer(KeyPurpose.ROOT, now=NOW)
