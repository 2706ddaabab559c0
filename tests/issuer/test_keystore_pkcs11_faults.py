"""Device and session errors from a real module: SoftHSM2 behind tests/p11shim.c, which
answers C_Sign and C_OpenSession with the CKR_ code a test asks for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cardsvc.core.keys import KeyPurpose
from cardsvc.errors import HsmError, SigningUnavailableError
from cardsvc.keystore.open import open_backend
from cardsvc.keystore.pkcs11 import Pkcs11Backend
from cardsvc.keystore.service import KeyPolicy, KeyService
from cardsvc.settings import Settings
from tests.softhsm import FaultyModule, Token

pytestmark = pytest.mark.softhsm

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CKR_DEVICE_ERROR = 0x30
CKR_DEVICE_REMOVED = 0x32
CKR_SESSION_HANDLE_INVALID = 0xB3
CKR_TOKEN_NOT_PRESENT = 0xE0


@pytest.fixture
def keys(faulty_module: FaultyModule, hsm_token: Token, tmp_path: Path) -> Iterator[KeyService]:
    faulty_module.heal()
    settings = hsm_token.settings(
        Settings(key_dir=tmp_path / "keys"), tmp_path, pkcs11_module=faulty_module.module
    )
    backend = open_backend(settings.key_store())
    assert isinstance(backend, Pkcs11Backend)
    service = KeyService(backend, KeyPolicy(), issuer="https://issuer.test")
    service.init(now=NOW)
    yield service
    faulty_module.heal()
    backend.close()


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (CKR_DEVICE_REMOVED, "DeviceRemoved"),
        (CKR_TOKEN_NOT_PRESENT, "TokenNotPresent"),
        (CKR_DEVICE_ERROR, "DeviceError"),
        (CKR_SESSION_HANDLE_INVALID, "SessionHandleInvalid"),
    ],
)
def test_a_device_that_keeps_failing_is_unavailable_until_it_answers_again(
    keys: KeyService, faulty_module: FaultyModule, code: int, name: str
) -> None:
    signer = keys.signer(KeyPurpose.ECARD, now=NOW)
    signer.sign(b"before")
    faulty_module.fail(code)
    for _ in range(3):
        with pytest.raises(SigningUnavailableError) as caught:
            signer.sign(b"while failing")
        assert name in caught.value.reason
        assert caught.value.retry_after >= 1
    faulty_module.heal()
    signer.verifying_key().verify_raw(signer.sign(b"after"), b"after")


@pytest.mark.parametrize("code", [CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_REMOVED])
def test_one_failure_is_recovered_within_the_same_call(
    keys: KeyService, faulty_module: FaultyModule, code: int
) -> None:
    signer = keys.signer(KeyPurpose.CARD_DOCUMENT, now=NOW)
    signer.sign(b"warm")
    faulty_module.fail(code, times=1)
    signature = signer.sign(b"once")  # the pool reopened and tried again
    signer.verifying_key().verify_raw(signature, b"once")
    assert faulty_module.faults.read_text().split()[1] == "0"  # the fault was met


def test_a_device_failing_at_start_stops_the_start_by_name(
    faulty_module: FaultyModule, hsm_token: Token, tmp_path: Path
) -> None:
    settings = hsm_token.settings(
        Settings(key_dir=tmp_path / "keys"), tmp_path, pkcs11_module=faulty_module.module
    )
    faulty_module.fail(CKR_DEVICE_ERROR)
    try:
        with pytest.raises(HsmError, match=r"cannot be opened \(DeviceError\)") as caught:
            open_backend(settings.key_store())
        assert caught.value.token == hsm_token.label
    finally:
        faulty_module.heal()
