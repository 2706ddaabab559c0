"""Offline-root mode: rotation keeps the invariants; imports are checked against the store."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cardsvc.core.keys import KeyPurpose
from cardsvc.core.trustlist import TrustedKey, TrustList
from cardsvc.errors import (
    NoActiveKeyError,
    OfflineRootError,
    RotationPendingError,
    TrustListNotInstalledError,
    TrustListRefusedError,
)
from cardsvc.keystore import ceremony
from cardsvc.keystore.ceremony_config import CeremonyConfig, load_config
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.keystore.offline import OfflineRoot
from cardsvc.keystore.service import KeyPolicy, KeyService
from cardsvc.services import TrustListPublisher
from tests.issuer.ceremony_helpers import ISSUER, ceremony_dir

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)
POLICY = KeyPolicy(cache_ttl=TTL)
LEEWAY = timedelta(seconds=5)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[CeremonyConfig]:
    os.environ["ISSUER_PASS"] = "issuer store passphrase"
    try:
        cfg = load_config(ceremony_dir(tmp_path))
        ceremony.run(cfg, now=T0)
        yield cfg
    finally:
        del os.environ["ISSUER_PASS"]


def keys_of(tmp_path: Path) -> KeyService:
    return KeyService(
        FileKeyBackend(tmp_path / "issuer-keys", b"issuer store passphrase"),
        POLICY,
        issuer=ISSUER,
        offline_root=OfflineRoot(tmp_path / "out" / "root.jwk", tmp_path / "installed.jws"),
    )


def signed(config: CeremonyConfig, trust_list: TrustList, tmp_path: Path, *, at: datetime) -> str:
    out = tmp_path / f"signed-{trust_list.sequence}-{at.timestamp()}.jws"
    _, token = ceremony.sign_trust_list(config, ceremony.unsigned_bytes(trust_list), out, now=at)
    return token


def installed(config: CeremonyConfig, tmp_path: Path) -> KeyService:
    keys = keys_of(tmp_path)
    keys.import_trust_list(config.outputs.trust_list.read_text().strip(), now=T0, leeway=LEEWAY)
    return keys


def test_first_keys_sign_once_the_first_list_is_installed(
    config: CeremonyConfig, tmp_path: Path
) -> None:
    keys = keys_of(tmp_path)
    with pytest.raises(TrustListNotInstalledError):
        keys.signer(KeyPurpose.ECARD, now=T0)
    with pytest.raises(TrustListNotInstalledError):
        keys.prepare_trust_list(now=T0, rotate=[KeyPurpose.ECARD])
    with pytest.raises(OfflineRootError):
        keys.issue_trust_list(now=T0)
    keys.import_trust_list(config.outputs.trust_list.read_text().strip(), now=T0, leeway=LEEWAY)
    assert keys.signer(KeyPurpose.ECARD, now=T0).kid  # nobody cached anything before
    publisher = TrustListPublisher(keys)
    assert publisher.current(now=T0).body == config.outputs.trust_list.read_text().strip()


def test_a_rotated_key_signs_one_ttl_after_its_list_is_installed_not_before(
    config: CeremonyConfig, tmp_path: Path
) -> None:
    keys = installed(config, tmp_path)
    old = keys.signing_record(KeyPurpose.ECARD, now=T0)
    prepared_at = T0 + timedelta(hours=1)
    next_list = keys.prepare_trust_list(now=prepared_at, rotate=[KeyPurpose.ECARD])
    new_kid = next(
        k.key.kid for k in next_list.keys if k.purpose is KeyPurpose.ECARD and k.key.kid != old.kid
    )
    with pytest.raises(RotationPendingError):
        keys.prepare_trust_list(now=prepared_at, rotate=[KeyPurpose.ECARD])
    # Its nominal start passes while the list travels to the offline root and back: the
    # staged key still does not sign, because no installed list publishes it.
    travelling = prepared_at + 2 * TTL
    assert keys.signing_record(KeyPurpose.ECARD, now=travelling).kid == old.kid
    assert new_kid not in {k.key.kid for k in keys.trusted_keys(now=travelling)}

    token = signed(config, next_list, tmp_path, at=prepared_at + timedelta(hours=2))
    imported_at = prepared_at + timedelta(hours=3)
    keys.import_trust_list(token, now=imported_at, leeway=LEEWAY)
    just_before = imported_at + TTL - timedelta(seconds=1)
    assert keys.signing_record(KeyPurpose.ECARD, now=just_before).kid == old.kid
    assert keys.signing_record(KeyPurpose.ECARD, now=imported_at + TTL).kid == new_kid
    retired = next(r for r in keys.records() if r.kid == old.kid)
    assert retired.retires_at == imported_at + TTL
    assert retired.verify_until == imported_at + TTL + POLICY.lifetime(KeyPurpose.ECARD) + TTL
    # Published (the served list is the one installed) and kept after its retirement.
    publisher = TrustListPublisher(keys)
    assert publisher.current(now=imported_at).body == token
    assert {old.kid, new_kid} <= {k.key.kid for k in keys.trusted_keys(now=imported_at)}
    # The next list keeps the retired key until its verify_until, then drops it.
    later = keys.prepare_trust_list(now=imported_at + timedelta(hours=12))
    assert old.kid in {k.key.kid for k in later.keys}
    gone = keys.prepare_trust_list(now=retired.verify_until + timedelta(seconds=1))
    assert old.kid not in {k.key.kid for k in gone.keys}


def test_no_other_key_signs_while_the_list_is_away(
    config: CeremonyConfig, tmp_path: Path
) -> None:
    keys = installed(config, tmp_path)
    keys.prepare_trust_list(now=T0, rotate=[KeyPurpose.STATUS_LIST])
    for hours in (1, 24, 24 * 30):
        at = T0 + timedelta(hours=hours)
        record = keys.signing_record(KeyPurpose.STATUS_LIST, now=at)
        assert record.retires_at is None and record.created_at == T0


def test_imports_that_would_break_verifiers_are_refused(
    config: CeremonyConfig, tmp_path: Path
) -> None:
    keys = installed(config, tmp_path)
    now = T0 + timedelta(hours=1)
    base = keys.prepare_trust_list(now=now)

    def refused(trust_list: TrustList, check: str, *, at: datetime = now) -> None:
        token = signed(config, trust_list, tmp_path, at=now)
        with pytest.raises(TrustListRefusedError) as info:
            keys.import_trust_list(token, now=at, leeway=LEEWAY)
        assert info.value.check == check, info.value.detail

    def variant(**changes: object) -> TrustList:
        fields = {
            "issuer": base.issuer, "sequence": base.sequence,
            "issued_at": base.issued_at, "expires_at": base.expires_at, "keys": base.keys,
        }  # fmt: skip
        fields.update(changes)
        return TrustList(**fields)  # type: ignore[arg-type]

    # A key in use left out: verifiers would refuse everything it signs.
    dropped = tuple(k for k in base.keys if k.purpose is not KeyPurpose.CARD_DOCUMENT)
    refused(variant(sequence=10, keys=dropped), "keys")
    # A key this issuer does not hold.
    stranger = signed_key_not_held()
    refused(variant(sequence=11, keys=(*base.keys, stranger)), "keys")
    # Expired by the time it arrives.
    refused(variant(sequence=12), "expired", at=base.expires_at + timedelta(minutes=2))
    # Another issuer's list, signed by this root (the offline side would refuse to).
    root_store = FileKeyBackend(tmp_path / "root-store", b"root store passphrase")
    other = variant(sequence=13, issuer="https://elsewhere.test")
    with pytest.raises(TrustListRefusedError) as info:
        keys.import_trust_list(
            other.sign(root_store.signer(keys.root_key().kid)), now=now, leeway=LEEWAY
        )
    assert info.value.check == "issuer"
    # Nothing above was installed: the store's schedules are untouched.
    assert keys.offline_root is not None
    installed_list = keys.offline_root.require_installed().trust_list
    assert installed_list.sequence == 0


def signed_key_not_held() -> TrustedKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    from cardsvc.core.keys import VerifyingKey

    key = VerifyingKey(public_key=ec.generate_private_key(ec.SECP256R1()).public_key())
    return TrustedKey(
        key=key, purpose=KeyPurpose.ECARD, not_before=T0, not_after=T0 + timedelta(days=3)
    )


def test_an_import_cut_short_after_the_schedules_can_be_run_again(
    config: CeremonyConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = installed(config, tmp_path)
    old = keys.signing_record(KeyPurpose.ECARD, now=T0)
    next_list = keys.prepare_trust_list(now=T0, rotate=[KeyPurpose.ECARD])
    token = signed(config, next_list, tmp_path, at=T0)
    assert keys.offline_root is not None

    def crash(token: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(keys.offline_root, "install", crash)
    with pytest.raises(OSError, match="disk full"):
        keys.import_trust_list(token, now=T0 + TTL, leeway=LEEWAY)
    monkeypatch.undo()
    # The schedules were written, the list was not: the new key does not sign (no
    # installed list publishes it) and the old one retired at the planned activation, so
    # nothing signs ecard tokens until the same import is run again...
    with pytest.raises(NoActiveKeyError):
        keys.signing_record(KeyPurpose.ECARD, now=T0 + 3 * TTL)
    keys.import_trust_list(token, now=T0 + 3 * TTL, leeway=LEEWAY)
    # ...which publishes it for one cache TTL from then before it signs.
    with pytest.raises(NoActiveKeyError):
        keys.signing_record(KeyPurpose.ECARD, now=T0 + 4 * TTL - timedelta(seconds=1))
    assert keys.signing_record(KeyPurpose.ECARD, now=T0 + 4 * TTL).kid != old.kid
    assert old.kid in {k.key.kid for k in keys.trusted_keys(now=T0 + 4 * TTL)}


def test_the_api_serves_the_installed_list_and_its_keys(
    config: CeremonyConfig, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from cardsvc.api.app import create_app
    from cardsvc.db.migrate import upgrade
    from cardsvc.services import Services, utcnow
    from cardsvc.settings import Settings

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        key_dir=tmp_path / "issuer-keys",
        key_passphrase="issuer store passphrase",  # type: ignore[arg-type]
        issuer=ISSUER,
        offline_root=True,
        root_key_file=tmp_path / "out" / "root.jwk",
    )
    services = Services.from_settings(settings)
    upgrade(services.engine)
    with pytest.raises(Exception, match="no trust list installed"):
        create_app(settings, services=services)
    now = utcnow()
    token = config.outputs.trust_list.read_text().strip()
    services.keys.import_trust_list(token, now=now, leeway=LEEWAY)
    client = TestClient(create_app(settings, services=services))
    served = client.get("/v1/trust-list")
    assert served.status_code == 200 and served.text == token
    jwks = client.get("/.well-known/jwks.json").json()
    assert {k["kid"] for k in jwks["keys"]} == {
        r.kid for r in services.keys.records() if r.purpose is not KeyPurpose.ROOT
    }
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["keys"]["trust_list"]["sequence"] == 0
    expires_at = datetime.fromisoformat(health["keys"]["trust_list"]["expires_at"])
    # A staged key is not published until the offline root signed a list with it.
    services.keys.prepare_trust_list(now=now, rotate=[KeyPurpose.ECARD])
    assert client.get("/v1/trust-list").text == token
    assert len(client.get("/.well-known/jwks.json").json()["keys"]) == len(jwks["keys"])
    # Past its expiry the operator's health check says so, naming what to run.
    services.clock = lambda: expires_at
    expired = client.get("/health")
    assert expired.status_code == 503
    assert expired.headers["content-type"] == "application/problem+json"
    assert expired.json()["type"].endswith("/trust-list-expired")
    assert "prepare-trust-list" in expired.json()["detail"]


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=300)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=6),
        lambda inner: st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["iss", "seq", "iat", "exp", "keys", "kid", "x"]),
                          inner, max_size=4),
        max_leaves=12,
    ).map(lambda obj: json.dumps(obj).encode())
)  # fmt: skip
def test_an_unsigned_list_of_junk_gets_a_typed_refusal(data: bytes) -> None:
    with contextlib.suppress(TrustListRefusedError):
        ceremony.read_unsigned(data)


def test_a_deeply_nested_unsigned_list_is_refused() -> None:
    with pytest.raises(TrustListRefusedError):
        ceremony.read_unsigned(b"[" * 200_000)
