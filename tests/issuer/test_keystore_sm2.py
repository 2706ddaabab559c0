"""SM2 keys in the file key store: encrypted at rest, pinned by the trust list, per purpose."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from cardsvc.core.carddoc import CardDocument, verify_card_document
from cardsvc.core.identity import CardNumber, CitizenId, RegionCode, Sex
from cardsvc.core.keys import ES256, ISSUING_PURPOSES, KeyPurpose
from cardsvc.core.qrtoken import encode_qr_token, verify_qr_token
from cardsvc.core.references import StatusReference
from cardsvc.core.sm2 import SM2SM3
from cardsvc.core.trustlist import TrustAnchor
from cardsvc.errors import WrongPassphraseError
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.keystore.service import KeyPolicy, KeyService
from cardsvc.settings import Settings
from tests.core.test_qrtoken import token

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PASS = b"correct horse battery staple"


def service(
    directory: Path, algorithms: dict[KeyPurpose, str], passphrase: bytes = PASS
) -> KeyService:
    policy = KeyPolicy(cache_ttl=timedelta(minutes=5), algorithms=algorithms)
    return KeyService(FileKeyBackend(directory, passphrase), policy, issuer="https://issuer.test")


def test_settings_name_the_algorithm_of_every_purpose_with_exceptions() -> None:
    settings = Settings(signing_algorithm="SM2SM3", purpose_algorithms={"root": "ES256"})
    policy = settings.key_policy()
    assert policy.algorithm(KeyPurpose.ROOT) == ES256
    assert {policy.algorithm(p) for p in ISSUING_PURPOSES} == {SM2SM3}
    assert Settings().key_policy().algorithm(KeyPurpose.ECARD) == ES256


def test_sm2_keys_are_encrypted_at_rest_and_reload_with_the_passphrase(tmp_path: Path) -> None:
    keys = service(tmp_path, {KeyPurpose.ECARD: SM2SM3})
    keys.init(now=NOW)
    record = keys.signing_record(KeyPurpose.ECARD, now=NOW)
    assert record.key.alg == SM2SM3
    pem = (tmp_path / "private" / f"{record.kid}.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    # A fresh process: the key loads from the file and signs what its public half verifies.
    signer = service(tmp_path, {}).signer(KeyPurpose.ECARD, now=NOW)
    assert signer.alg == SM2SM3 and signer.kid == record.kid
    record.key.verify_raw(signer.sign(b"data"), b"data")
    with pytest.raises(WrongPassphraseError):
        service(tmp_path, {}, passphrase=b"wrong").signer(KeyPurpose.ECARD, now=NOW)


def test_one_trust_list_holds_both_suites_and_each_key_verifies_its_own(tmp_path: Path) -> None:
    keys = service(tmp_path, {KeyPurpose.ECARD: SM2SM3, KeyPurpose.CARD_DOCUMENT: ES256})
    keys.init(now=NOW)
    anchor = TrustAnchor(keys.root_key())
    trust_list = anchor.accept(keys.issue_trust_list(now=NOW), now=NOW, leeway=timedelta(0))
    algs = {k.purpose: k.key.alg for k in trust_list.keys}
    assert algs[KeyPurpose.ECARD] == SM2SM3 and algs[KeyPurpose.CARD_DOCUMENT] == ES256

    qr_token = token(issued_at=NOW, expires_at=NOW + timedelta(seconds=60))
    text = encode_qr_token(qr_token, keys.signer(KeyPurpose.ECARD, now=NOW))
    assert verify_qr_token(text, trust_list=trust_list, now=NOW, leeway=timedelta(0)) == qr_token

    # An ES256 card document carrying an SM2 chip key, the third-generation card's case.
    document = CardDocument(
        issuer="https://issuer.test",
        card_number=CardNumber.parse("S84843322"),
        citizen_id=CitizenId.parse("11010519491231002X"),
        name="王芳",
        sex=Sex.FEMALE,
        birth_date=date(1949, 12, 31),
        region=RegionCode.parse("110105"),
        issue_date=date(2026, 1, 1),
        expiry_date=date(2036, 1, 1),
        chip_key=keys.signing_record(KeyPurpose.ECARD, now=NOW).key,
        status=StatusReference(idx=7, uri="https://issuer.test/v1/status-lists/1"),
        issued_at=NOW,
    )
    signed = document.sign(keys.signer(KeyPurpose.CARD_DOCUMENT, now=NOW))
    verified = verify_card_document(signed, trust_list=trust_list, now=NOW, leeway=timedelta(0))
    assert verified.chip_key.alg == SM2SM3 and verified == document


def test_changing_the_setting_rotates_the_purposes_of_the_other_algorithm(tmp_path: Path) -> None:
    service(tmp_path, {}).init(now=NOW)
    keys = service(tmp_path, {KeyPurpose.STATUS_LIST: SM2SM3})
    created = keys.init(now=NOW)
    assert [(r.purpose, r.key.alg) for r in created] == [(KeyPurpose.STATUS_LIST, SM2SM3)]
    # The ES256 key signs until the SM2 key is due, one cache TTL later (as every rotation).
    assert keys.signer(KeyPurpose.STATUS_LIST, now=NOW).alg == ES256
    later = NOW + timedelta(minutes=5)
    assert keys.signer(KeyPurpose.STATUS_LIST, now=later).alg == SM2SM3
    assert keys.init(now=later) == []  # settled
