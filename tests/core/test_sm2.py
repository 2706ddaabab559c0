"""The SM2-with-SM3 suite: published examples, keys, the optional extra, algorithm confusion."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.core import cose, sm2
from cardsvc.core.base45 import b45encode
from cardsvc.core.errors import CoreError, DecodeError, VerificationError
from cardsvc.core.jws import verify_jws
from cardsvc.core.keys import (
    ES256,
    KeyPurpose,
    VerifyingKey,
    b64url_encode,
    jwk_thumbprint,
    public_jwk,
    short_kid,
)
from cardsvc.core.qrtoken import SCHEME_PREFIX, verify_qr_token
from cardsvc.core.signing import LocalSigner, Sm2Signer, is_high_s, low_s
from cardsvc.core.sm2 import SM2SM3, Sm2PrivateKey, Sm2PublicKey
from cardsvc.core.trustlist import TrustedKey, TrustList

ROOT = Path(__file__).resolve().parents[2]


def _load_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sm2_reference", ROOT / "schemas" / "sm2_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _load_reference()

# GB/T 32905-2016 (SM3), examples 1 and 2.
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
# GM/T 0003.5-2012, the signature example on the recommended curve (also in GmSSL's and
# openHiTLS's SM2 self-tests): key, signer ID, message, Z, e, k and the signature.
D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
XA = 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
YA = 0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13
MESSAGE = b"message digest"
Z = "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3"
E = 0xF0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640
K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
R = "f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3"
S = "b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa"


def test_sm3_published_examples() -> None:
    assert sm2.sm3(b"abc").hex() == SM3_ABC
    assert sm2.sm3(b"abcd" * 16).hex() == SM3_ABCD16


def test_published_sm2_example_z_digest_and_signature() -> None:
    assert reference.public_point(D) == (XA, YA)
    assert sm2.z_value(XA, YA).hex() == Z
    assert reference.digest(D, MESSAGE) == E
    # The reference signer reproduces r and s from the published k ...
    assert reference.sign(D, MESSAGE, k=K).hex() == R + S
    # ... and the library verifies the published signature, hashing Z itself.
    Sm2PublicKey(XA, YA).verify(bytes.fromhex(R + S), MESSAGE)
    key = Sm2PrivateKey.from_scalar(D)
    assert key.public_key() == Sm2PublicKey(XA, YA)


def test_published_signature_fails_on_another_message_or_signer_id() -> None:
    public = Sm2PublicKey(XA, YA)
    with pytest.raises(VerificationError) as info:
        public.verify(bytes.fromhex(R + S), b"message digesT")
    assert info.value.check == "signature"
    other_id = reference.sign_digest(
        D, int.from_bytes(sm2.sm3(sm2.z_value(XA, YA, b"ALICE123@YAHOO.COM") + MESSAGE)), K
    )
    with pytest.raises(VerificationError):
        public.verify(other_id, MESSAGE)


def test_signature_computed_without_z_is_refused() -> None:
    without_z = reference.sign(D, MESSAGE, k=K, with_z=False)
    with pytest.raises(VerificationError) as info:
        Sm2PublicKey(XA, YA).verify(without_z, MESSAGE)
    assert info.value.check == "signature"


def test_signer_round_trip_and_kid_is_the_thumbprint_of_the_sm2_jwk() -> None:
    signer = Sm2Signer(Sm2PrivateKey.generate())
    key = signer.verifying_key()
    assert key.alg == SM2SM3
    jwk = key.jwk()
    assert jwk["kty"] == "EC" and jwk["crv"] == "SM2" and jwk["alg"] == "SM2SM3"
    assert key.kid == jwk_thumbprint(jwk) == signer.kid
    assert VerifyingKey.from_jwk(jwk) == key
    signature = signer.sign(b"data")
    key.verify_raw(signature, b"data")
    with pytest.raises(VerificationError):
        key.verify_raw(signature, b"date")


def test_low_s_does_not_apply_to_sm2() -> None:
    # (r, n - s) is no second form of an SM2 signature: it does not verify, so there is
    # nothing to normalise, and low_s leaves an SM2 signature alone.
    signer = Sm2Signer(Sm2PrivateKey.from_scalar(D))
    signature = signer.sign(b"data")
    twin = signature[:32] + (sm2.N - int.from_bytes(signature[32:])).to_bytes(32)
    assert low_s(signature, SM2SM3) == signature and low_s(twin, SM2SM3) == twin
    assert not is_high_s(twin, SM2SM3)
    with pytest.raises(VerificationError):
        signer.verifying_key().verify_raw(twin, b"data")


@pytest.mark.parametrize("r, s", [(0, 1), (1, 0), (sm2.N, 1), (1, sm2.N)])
def test_out_of_range_r_or_s_is_refused(r: int, s: int) -> None:
    with pytest.raises(VerificationError, match="r and s"):
        Sm2PublicKey(XA, YA).verify(r.to_bytes(32) + s.to_bytes(32), MESSAGE)


def test_sm2_key_in_the_file_form_is_encrypted_pkcs8() -> None:
    key = Sm2PrivateKey.from_scalar(D)
    pem = key.to_pem(b"passphrase")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert Sm2PrivateKey.from_pem(pem, b"passphrase").scalar == D
    with pytest.raises(ValueError):
        Sm2PrivateKey.from_pem(pem, b"wrong")


# --- algorithm confusion -------------------------------------------------------------


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0x5EED, ec.SECP256R1())


def test_sm2_signature_under_an_es256_key_is_refused() -> None:
    p256 = _p256()
    es_key = VerifyingKey(public_key=p256.public_key())
    sm_signature = reference.sign(D, MESSAGE)
    with pytest.raises(VerificationError) as info:
        es_key.verify_raw(sm_signature, MESSAGE)
    assert info.value.check == "signature"
    # COSE: an SM2-labelled token checked with an ES256 key fails on the algorithm.
    token = cose.sign1(MESSAGE, Sm2Signer(Sm2PrivateKey.from_scalar(D)), kid=b"k")
    with pytest.raises(VerificationError) as info:
        cose.verify_sign1(cose.decode_sign1(token), es_key)
    assert info.value.check == "algorithm"


def test_es256_signature_under_an_sm2_key_is_refused() -> None:
    p256 = _p256()
    r, s = decode_dss_signature(p256.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))
    es_signature = low_s(r.to_bytes(32) + s.to_bytes(32))
    sm_key = VerifyingKey(public_key=Sm2PublicKey(XA, YA))
    with pytest.raises(VerificationError) as info:
        sm_key.verify_raw(es_signature, MESSAGE)
    assert info.value.check == "signature"
    token = cose.sign1(MESSAGE, LocalSigner(p256), kid=b"k")
    with pytest.raises(VerificationError) as info:
        cose.verify_sign1(cose.decode_sign1(token), sm_key)
    assert info.value.check == "algorithm"


def test_sm2_key_used_for_a_token_labelled_es256_is_refused() -> None:
    """An SM2 signature in a COSE_Sign1 whose header says ES256 (-7): the key decides."""
    message = cose.decode_sign1(cose.sign1(MESSAGE, LocalSigner(_p256())))
    tbs = cbor_sig_structure(message.protected_bytes, MESSAGE)
    forged = cose.Sign1Message(
        protected=message.protected,
        protected_bytes=message.protected_bytes,
        unprotected={},
        payload=MESSAGE,
        signature=reference.sign(D, tbs),
    )
    with pytest.raises(VerificationError) as info:
        cose.verify_sign1(forged, VerifyingKey(public_key=Sm2PublicKey(XA, YA)))
    assert info.value.check == "algorithm"
    with pytest.raises(DecodeError):
        VerifyingKey(public_key=Sm2PublicKey(XA, YA), alg=ES256)


def cbor_sig_structure(protected: bytes, payload: bytes) -> bytes:
    import cbor2

    return bytes(cbor2.dumps(["Signature1", protected, b"", payload]))


def test_same_coordinates_under_both_algorithms_are_two_keys_or_refused() -> None:
    sm_jwk = public_jwk(Sm2PublicKey(XA, YA))
    # The SM2 point is not on P-256: labelled P-256 (or ES256) it is refused ...
    with pytest.raises(DecodeError, match="P-256"):
        VerifyingKey.from_jwk({**sm_jwk, "crv": "P-256"})
    with pytest.raises(DecodeError, match="does not match"):
        VerifyingKey.from_jwk({**sm_jwk, "alg": "ES256"})
    # ... and the thumbprint covers crv, so the one pair of coordinates could never share
    # a kid across the two curves.
    assert jwk_thumbprint(sm_jwk) != jwk_thumbprint({**sm_jwk, "crv": "P-256"})


def test_p256_point_presented_as_sm2_key_is_refused() -> None:
    p256_jwk = public_jwk(_p256().public_key())
    with pytest.raises(DecodeError, match="not on the SM2 curve"):
        VerifyingKey.from_jwk({**p256_jwk, "crv": "SM2"})
    with pytest.raises(DecodeError, match="does not match"):
        VerifyingKey.from_jwk({**p256_jwk, "alg": "SM2SM3"})
    with pytest.raises(DecodeError):
        VerifyingKey(public_key=_p256().public_key(), alg=SM2SM3)


def test_sm2_jwk_must_be_canonical_and_public() -> None:
    jwk = public_jwk(Sm2PublicKey(XA, YA))
    with pytest.raises(DecodeError, match="private member"):
        VerifyingKey.from_jwk({**jwk, "d": b64url_encode(D.to_bytes(32))})
    with pytest.raises(DecodeError, match="32 bytes"):
        VerifyingKey.from_jwk({**jwk, "x": b64url_encode(XA.to_bytes(33))})


# --- without the extra ---------------------------------------------------------------

_WITHOUT_EXTRA = """
import sys
sys.modules["tongsuopy"] = None  # as if cardsvc[sm] were not installed
import json
import cardsvc.core
from cardsvc.core import AlgorithmUnavailableError, VerifyingKey
from cardsvc.core.sm2 import available
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cardsvc.core.signing import LocalSigner
assert not available()
jwk = json.loads(sys.argv[1])
key = VerifyingKey.from_jwk(jwk)  # parsed: a trust list holding it still loads
try:
    key.verify_raw(bytes(64), b"data")
except AlgorithmUnavailableError as exc:
    print(exc.check, exc.extra, exc.detail)
else:
    raise SystemExit("verified without the library")
signer = LocalSigner(ec.generate_private_key(ec.SECP256R1()))  # ES256 untouched
signer.verifying_key().verify_raw(signer.sign(b"data"), b"data")
"""


def test_core_without_the_extra_imports_and_refuses_sm2_keys_naming_it() -> None:
    jwk = json.dumps(public_jwk(Sm2PublicKey(XA, YA)))
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRA, jwk],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("algorithm-unavailable cardsvc[sm] ")
    assert "pip install 'cardsvc[sm]'" in result.stdout


# --- bad input: every SM2 decoder gives a value or a typed error ----------------------




SM2_KEY = VerifyingKey(public_key=Sm2PublicKey(XA, YA))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
B64_COORD = st.binary(min_size=30, max_size=34).map(b64url_encode) | st.text(max_size=50)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
SM2_TRUST_LIST = TrustList(
    issuer="https://issuer.test",
    sequence=1,
    issued_at=NOW,
    expires_at=NOW + timedelta(days=1),
    keys=(
        TrustedKey(
            key=SM2_KEY,
            purpose=KeyPurpose.ECARD,
            not_before=NOW - timedelta(days=1),
            not_after=NOW + timedelta(days=1),
        ),
    ),
)


@given(st.dictionaries(st.sampled_from(["kty", "crv", "x", "y", "alg", "d"]), JSON) | JSON)
def test_random_json_as_jwk_gives_a_key_or_a_typed_error(jwk: object) -> None:
    try:
        key = VerifyingKey.from_jwk(jwk)  # type: ignore[arg-type]
    except CoreError:
        return
    assert key.alg in ("ES256", "SM2SM3")


@given(x=B64_COORD, y=B64_COORD, alg=st.sampled_from([None, "SM2SM3", "ES256", "SM2", 7]))
def test_random_sm2_jwk_members_give_a_key_or_a_typed_error(x: str, y: str, alg: object) -> None:
    jwk: dict[str, object] = {"kty": "EC", "crv": "SM2", "x": x, "y": y}
    if alg is not None:
        jwk["alg"] = alg
    try:
        key = VerifyingKey.from_jwk(jwk)
    except CoreError:
        return
    assert key.alg == SM2SM3  # pragma: no cover - a random point is on the curve ~never


@given(st.binary(max_size=80))
def test_random_bytes_as_sm2_point_give_a_key_or_a_typed_error(point: bytes) -> None:
    try:
        Sm2PublicKey.from_point(point)
    except CoreError:
        return


@given(signature=st.binary(max_size=80), data=st.binary(max_size=64))
def test_random_sm2_signatures_give_typed_errors(signature: bytes, data: bytes) -> None:
    with pytest.raises(VerificationError):
        SM2_KEY.verify_raw(signature, data)


@given(st.text(max_size=300))
def test_random_text_as_an_sm2_jws_gives_typed_errors(text: str) -> None:
    with pytest.raises(CoreError):
        verify_jws(text, typ="JWT", key_for=lambda _header: SM2_KEY)


@given(st.binary(max_size=300))
def test_random_cose_bytes_under_an_sm2_key_give_typed_errors(data: bytes) -> None:
    with pytest.raises(CoreError):
        verify_qr_token(
            SCHEME_PREFIX + b45encode(data),
            trust_list=SM2_TRUST_LIST,
            now=NOW,
            leeway=timedelta(0),
        )


@given(st.binary(max_size=200))
def test_random_payloads_signed_with_sm2_give_typed_errors_or_a_token(payload: bytes) -> None:
    text = SCHEME_PREFIX + b45encode(cose.sign1(payload, SM2_SIGNER, kid=SM2_SHORT_KID))
    try:
        verify_qr_token(text, trust_list=SM2_TRUST_LIST, now=NOW, leeway=timedelta(0))
    except CoreError:
        return


SM2_SIGNER = Sm2Signer(Sm2PrivateKey.from_scalar(D))
SM2_SHORT_KID = short_kid(SM2_SIGNER.kid)


def test_the_sm2_walk_through_in_verifying_md_is_the_vector() -> None:
    from cardsvc.core.base45 import b45decode

    text = (ROOT / "docs" / "verifying.md").read_text()
    vector = json.loads(
        (ROOT / "schemas" / "vectors" / "sm2" / "qr-token" / "sm2-transport-valid.json").read_text()
    )
    raw = b45decode(vector["input"][len(SCHEME_PREFIX) :])
    shown_hex = text.split("base45-decodes to 152 bytes:")[1].split("```")[1]
    assert raw.hex() == "".join(shown_hex.split())
    message = cose.decode_sign1(raw)
    key = VerifyingKey.from_jwk(
        next(k for k in _trust_list_keys(vector) if k["purpose"] == "ecard" and k["crv"] == "SM2")
    )
    assert isinstance(key.public_key, Sm2PublicKey)
    z = sm2.z_value(key.public_key.x, key.public_key.y)
    to_be_signed = cbor_sig_structure(message.protected_bytes, message.payload)
    assert f"Z = {z.hex()}" in text
    assert f"e = SM3(Z ‖ M) = {sm2.sm3(z + to_be_signed).hex()}" in text
    assert f"`{key.kid}`" in text
    assert message.protected_bytes.hex() == "a2013a000101f40448" + short_kid(key.kid).hex()


def _trust_list_keys(vector: dict[str, object]) -> list[dict[str, str]]:
    from cardsvc.core.keys import b64url_decode

    token = str(vector["trust_list"])
    keys: list[dict[str, str]] = json.loads(b64url_decode(token.split(".")[1]))["keys"]
    return keys
