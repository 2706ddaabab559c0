"""Tests for cardsvc.core.cose: every COSE WG vector, our stricter profile, hostile input."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from unittest import mock

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.core import cose
from cardsvc.core.cose import (
    ALG_ES256,
    HEADER_ALG,
    HEADER_CRIT,
    HEADER_KID,
    MAX_SIGN1_SIZE,
    TAG_SIGN1,
    Sign1Message,
    _bstr_head,
    _decode_protected,
    _decode_protected_cbor,
    _sig_structure,
    _split_cbor,
    _split_plain,
    _to_be_signed,
    decode_sign1,
    sign1,
    verify_sign1,
)
from cardsvc.core.errors import CoreError, DecodeError, InputTooLargeError, VerificationError
from cardsvc.core.signing import LocalSigner
from tests.conftest import STANDARD_VECTORS

# The COSE WG and RFC 8392 vectors (tests/vectors, copied from ../shared/vectors).
VECTORS = STANDARD_VECTORS

CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
HASHES: dict[int, hashes.HashAlgorithm] = {
    -7: hashes.SHA256(),
    -35: hashes.SHA384(),
    -36: hashes.SHA512(),
}

# RFC 8392 appendix A.1, the claims set of examples A.3 to A.6.
CWT_CLAIMS: dict[int, object] = {
    1: "coap://as.example.com",  # iss
    2: "erikw",  # sub
    3: "coap://light.example.com",  # aud
    4: 1444064944,  # exp
    5: 1443944944,  # nbf
    6: 1443944944,  # iat
    7: bytes.fromhex("0b71"),  # cti
}
# RFC 8392 appendix A.7: iat as a floating-point number.
CWT_FLOAT_CLAIMS: dict[int, object] = {6: 1443944944.5}


@dataclass(frozen=True)
class Valid:
    """Decodes and verifies; ``external_aad`` says the vector's AAD is needed."""

    external_aad: bool = False


@dataclass(frozen=True)
class Rejected:
    """Decodes, then verify_sign1 raises VerificationError(check) with this detail."""

    check: str
    detail: str


@dataclass(frozen=True)
class Undecodable:
    """decode_sign1 raises DecodeError with exactly this reason."""

    reason: str


NOT_ES256 = "alg {} is not ES256 (-7)"
UNKNOWN_LABEL_3 = "protected labels 3 are not in our profile (alg 1, kid 4)"
BAD_SIGNATURE = Rejected("signature", "ES256 signature does not verify")

EXPECTED: dict[str, Valid | Rejected | Undecodable] = {
    # Valid COSE, outside our profile: content type (3) in the protected header, and the
    # signature is high-S (test_profile_rejected_vectors_are_otherwise_valid).
    "cose-sign1/ecdsa-sig-01.json": Rejected("header", UNKNOWN_LABEL_3),
    # P-384 / ES384 and P-521 / ES512: valid COSE, outside our ES256-only profile.
    "cose-sign1/ecdsa-sig-02.json": Rejected("algorithm", NOT_ES256.format("-35 (ES384)")),
    "cose-sign1/ecdsa-sig-03.json": Rejected("algorithm", NOT_ES256.format("-36 (ES512)")),
    # A P-256 key with SHA-512: still not ES256.
    "cose-sign1/ecdsa-sig-04.json": Rejected("algorithm", NOT_ES256.format("-36 (ES512)")),
    "cose-sign1/sign-fail-01.json": Undecodable("CBOR tag 998 is not a COSE_Sign1 (tag 18)"),
    "cose-sign1/sign-fail-02.json": BAD_SIGNATURE,  # payload changed
    "cose-sign1/sign-fail-03.json": Rejected("algorithm", NOT_ES256.format("-999")),
    "cose-sign1/sign-fail-04.json": Rejected("algorithm", NOT_ES256.format("'unknown'")),
    "cose-sign1/sign-fail-06.json": Rejected("header", UNKNOWN_LABEL_3),  # attribute added
    # Protected attribute removed; its signature is high-S, which is refused before any
    # curve arithmetic.
    "cose-sign1/sign-fail-07.json": Rejected(
        "signature", "s is above n/2: only the low-S form is accepted"
    ),
    # Valid under RFC 9052, but alg sits only in the unprotected header.
    "cose-sign1/sign-pass-01.json": Rejected(
        "algorithm",
        "alg must be in the protected header (it is only in the unprotected header)",
    ),
    "cose-sign1/sign-pass-02.json": Valid(external_aad=True),
    "cose-sign1/sign-pass-03.json": Valid(),  # untagged
    "cwt/A_3.json": Valid(),
    "cwt/A_4.json": Undecodable("COSE_Mac0 (tag 17) is not a COSE_Sign1 (tag 18)"),
    "cwt/A_5.json": Undecodable("COSE_Encrypt0 (tag 16) is not a COSE_Sign1 (tag 18)"),
    "cwt/A_6.json": Undecodable("COSE_Encrypt0 (tag 16) is not a COSE_Sign1 (tag 18)"),
    "cwt/A_7.json": Undecodable("COSE_Mac0 (tag 17) is not a COSE_Sign1 (tag 18)"),
}


def load_vector(name: str) -> dict[str, Any]:
    path = VECTORS / name
    assert path.is_file(), f"missing test vector {path}"
    vector: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return vector


def vector_bytes(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["output"]["cbor"])


def vector_plaintext(vector: dict[str, Any]) -> bytes:
    inputs = vector["input"]
    if "plaintext_hex" in inputs:
        return bytes.fromhex(inputs["plaintext_hex"])
    return str(inputs["plaintext"]).encode("utf-8")


def vector_aad(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["input"]["sign0"].get("external", ""))


def _coordinate(key: dict[str, str], name: str) -> int:
    if f"{name}_hex" in key:
        return int(key[f"{name}_hex"], 16)
    text = key[name]
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def vector_public_key(vector: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    """The verification key of a vector, from its JWK-like x/y (base64url or hex)."""
    key = vector["input"]["sign0"]["key"]
    assert key["kty"] == "EC"
    numbers = ec.EllipticCurvePublicNumbers(
        _coordinate(key, "x"), _coordinate(key, "y"), CURVES[key["crv"]]
    )
    return numbers.public_key()


# --- the COSE WG and RFC 8392 vectors ------------------------------------------------------


def test_vectors_directory_holds_exactly_the_expected_vectors() -> None:
    assert VECTORS.is_dir(), f"test vectors not found at {VECTORS}"
    found = {
        path.relative_to(VECTORS).as_posix()
        for pattern in ("cose-sign1/*.json", "cwt/*.json")
        for path in VECTORS.glob(pattern)
    }
    # A new vector must get an expected outcome here before it counts as tested.
    assert found == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector(name: str) -> None:
    vector = load_vector(name)
    expected = EXPECTED[name]
    if vector.get("fail"):
        assert not isinstance(expected, Valid), "a 'fail' vector must not verify"

    if isinstance(expected, Undecodable):
        with pytest.raises(DecodeError) as decode_info:
            decode_sign1(vector_bytes(vector))
        assert type(decode_info.value) is DecodeError
        assert decode_info.value.format_name == "cose"
        assert decode_info.value.reason == expected.reason
        return

    msg = decode_sign1(vector_bytes(vector))
    key = vector_public_key(vector)
    aad = vector_aad(vector)
    if isinstance(expected, Rejected):
        with pytest.raises(VerificationError) as verify_info:
            verify_sign1(msg, key, external_aad=aad)
        assert verify_info.value.check == expected.check
        assert verify_info.value.detail == f"{expected.check}: {expected.detail}"
        return

    assert verify_sign1(msg, key, external_aad=aad) == vector_plaintext(vector)
    if expected.external_aad:
        assert aad
        with pytest.raises(VerificationError) as without_aad:
            verify_sign1(msg, key)
        assert without_aad.value.check == "signature"


# Signed as they stand: the "fail" vectors were changed after their ToBeSign was computed.
UNTAMPERED = sorted(
    name
    for name, outcome in EXPECTED.items()
    if not isinstance(outcome, Undecodable) and "fail" not in name
)


@pytest.mark.parametrize("name", UNTAMPERED)
def test_vector_to_be_signed(name: str) -> None:
    vector = load_vector(name)
    assert not vector.get("fail")
    msg = decode_sign1(vector_bytes(vector))
    assert msg.payload == vector_plaintext(vector)
    expected = bytes.fromhex(vector["intermediates"]["ToBeSign_hex"])
    assert _to_be_signed(msg, vector_aad(vector)) == expected


@pytest.mark.parametrize(
    "name",
    [
        "cose-sign1/ecdsa-sig-02.json",
        "cose-sign1/ecdsa-sig-03.json",
        "cose-sign1/ecdsa-sig-04.json",
    ],
)
def test_rejected_algorithm_vectors_are_otherwise_valid(name: str) -> None:
    # These signatures do verify under their own algorithm: only our profile rejects them.
    vector = load_vector(name)
    msg = decode_sign1(vector_bytes(vector))
    assert isinstance(msg.alg, int)
    size = len(msg.signature) // 2
    der = encode_dss_signature(
        int.from_bytes(msg.signature[:size]), int.from_bytes(msg.signature[size:])
    )
    tbs = bytes.fromhex(vector["intermediates"]["ToBeSign_hex"])
    vector_public_key(vector).verify(der, tbs, ec.ECDSA(HASHES[msg.alg]))


def test_profile_rejected_vectors_are_otherwise_valid() -> None:
    # ecdsa-sig-01 verifies under RFC 9052; our profile refuses its label 3 and its high-S.
    vector = load_vector("cose-sign1/ecdsa-sig-01.json")
    msg = decode_sign1(vector_bytes(vector))
    assert msg.protected == {HEADER_ALG: ALG_ES256, 3: 0}
    s = int.from_bytes(msg.signature[32:])
    assert s > P256_ORDER // 2
    tbs = bytes.fromhex(vector["intermediates"]["ToBeSign_hex"])
    for form in (s, P256_ORDER - s):
        der = encode_dss_signature(int.from_bytes(msg.signature[:32]), form)
        vector_public_key(vector).verify(der, tbs, ec.ECDSA(hashes.SHA256()))


def test_sign_pass_01_is_valid_rfc9052_but_not_our_profile() -> None:
    vector = load_vector("cose-sign1/sign-pass-01.json")
    msg = decode_sign1(vector_bytes(vector))
    assert msg.protected_bytes == b"\xa0"  # an empty map, not a zero-length bstr
    assert msg.protected == {}
    assert msg.unprotected == {HEADER_ALG: ALG_ES256, HEADER_KID: b"11"}
    assert msg.alg is None  # only the protected header counts
    assert msg.kid == b"11"
    # RFC 9052 signs an empty protected header as h'' even when it is sent as h'a0'.
    tbs = _to_be_signed(msg, b"")
    assert tbs == bytes.fromhex(vector["intermediates"]["ToBeSign_hex"])
    assert _sig_structure(b"", b"", msg.payload) == tbs
    der = encode_dss_signature(
        int.from_bytes(msg.signature[:32]), int.from_bytes(msg.signature[32:])
    )
    vector_public_key(vector).verify(der, tbs, ec.ECDSA(hashes.SHA256()))


def test_other_curve_key_with_es256_message_fails_the_key_check() -> None:
    msg = decode_sign1(vector_bytes(load_vector("cose-sign1/sign-pass-03.json")))
    p384 = vector_public_key(load_vector("cose-sign1/ecdsa-sig-02.json"))
    with pytest.raises(VerificationError) as info:
        verify_sign1(msg, p384)
    assert info.value.check == "key"
    assert "P-256" in str(info.value)


def test_vector_headers_are_decoded() -> None:
    msg = decode_sign1(vector_bytes(load_vector("cose-sign1/ecdsa-sig-01.json")))
    assert msg.protected_bytes == bytes.fromhex("a201260300")
    assert msg.protected == {HEADER_ALG: ALG_ES256, 3: 0}
    assert msg.unprotected == {HEADER_KID: b"11"}
    assert msg.alg == ALG_ES256
    assert msg.kid == b"11"
    untagged = decode_sign1(vector_bytes(load_vector("cose-sign1/sign-pass-03.json")))
    tagged = decode_sign1(vector_bytes(load_vector("cose-sign1/sign-fail-02.json")))
    assert untagged.protected_bytes == tagged.protected_bytes == b"\xa1\x01\x26"


def test_cwt_a3_signed_claims() -> None:
    vector = load_vector("cwt/A_3.json")
    msg = decode_sign1(vector_bytes(vector))
    assert msg.kid is None
    payload = verify_sign1(msg, vector_public_key(vector))
    assert payload == vector_plaintext(vector)
    assert cbor2.loads(payload) == CWT_CLAIMS


@pytest.mark.parametrize(
    ("name", "claims"), [("cwt/A_4.json", CWT_CLAIMS), ("cwt/A_7.json", CWT_FLOAT_CLAIMS)]
)
def test_cwt_maced_claims_in_plain_cbor(name: str, claims: dict[int, object]) -> None:
    # Not a COSE_Sign1 (test_vector asserts the rejection); check the vector itself here.
    vector = load_vector(name)
    outer = cbor2.loads(vector_bytes(vector))
    assert isinstance(outer, cbor2.CBORTag)
    assert outer.tag == 17
    protected, unprotected, payload, tag = outer.value
    assert cbor2.loads(protected) == {HEADER_ALG: 4}  # HMAC 256/64
    assert unprotected == {}
    assert payload == vector_plaintext(vector)
    assert cbor2.loads(payload) == claims
    to_mac = cbor2.dumps(["MAC0", protected, b"", payload])
    assert to_mac == bytes.fromhex(vector["intermediates"]["ToMac_hex"])
    key = bytes.fromhex(vector["intermediates"]["CEK_hex"])
    assert hmac.new(key, to_mac, hashlib.sha256).digest()[:8] == tag


def _decrypt_encrypt0(vector: dict[str, Any]) -> bytes:
    """AES-CCM-16-128/64 (alg 10) with a direct key, RFC 8392 A.5 and A.6."""
    outer = cbor2.loads(vector_bytes(vector))
    assert isinstance(outer, cbor2.CBORTag)
    assert outer.tag == 16
    protected, unprotected, ciphertext = outer.value
    assert cbor2.loads(protected) == {HEADER_ALG: 10}
    aad = cbor2.dumps(["Encrypt0", protected, b""])
    assert aad == bytes.fromhex(vector["intermediates"]["AAD_hex"])
    key = bytes.fromhex(vector["intermediates"]["CEK_hex"])
    plaintext: bytes = AESCCM(key, tag_length=8).decrypt(unprotected[5], ciphertext, aad)
    return plaintext


def test_cwt_a5_encrypted_claims() -> None:
    vector = load_vector("cwt/A_5.json")
    plaintext = _decrypt_encrypt0(vector)
    assert plaintext == vector_plaintext(vector)
    assert cbor2.loads(plaintext) == CWT_CLAIMS


def test_cwt_a6_nested_sign1_verifies_with_the_a3_key() -> None:
    # The outer COSE_Encrypt0 is rejected (test_vector); its content is the A.3 COSE_Sign1.
    vector = load_vector("cwt/A_6.json")
    inner = _decrypt_encrypt0(vector)
    assert inner == vector_plaintext(vector)
    payload = verify_sign1(decode_sign1(inner), vector_public_key(load_vector("cwt/A_3.json")))
    assert cbor2.loads(payload) == CWT_CLAIMS


# --- signing and verifying -----------------------------------------------------------------

KEY = ec.derive_private_key(0x1F2E3D4C5B6A7988, ec.SECP256R1())
SIGNER = LocalSigner(KEY)
OTHER_KEY = ec.derive_private_key(0x0102030405060708, ec.SECP256R1())


@pytest.mark.parametrize("kid", [None, b"", b"kid-1", bytes(300)])
@pytest.mark.parametrize("tagged", [True, False])
@pytest.mark.parametrize("aad", [b"", b"context"])
def test_round_trip(kid: bytes | None, tagged: bool, aad: bytes) -> None:
    payload = bytes(range(250))
    data = sign1(payload, SIGNER, kid=kid, external_aad=aad, tagged=tagged)
    msg = decode_sign1(data)
    assert msg.kid == kid
    assert msg.alg == ALG_ES256
    assert msg.unprotected == {}
    assert verify_sign1(msg, KEY.public_key(), external_aad=aad) == payload
    if aad:
        with pytest.raises(VerificationError) as info:
            verify_sign1(msg, KEY.public_key())
        assert info.value.check == "signature"


@given(payload=st.binary(max_size=600), kid=st.none() | st.binary(max_size=40))
def test_round_trip_property(payload: bytes, kid: bytes | None) -> None:
    msg = decode_sign1(sign1(payload, SIGNER, kid=kid))
    assert verify_sign1(msg, KEY.public_key()) == payload
    assert msg.kid == kid


def test_sign1_layout() -> None:
    data = sign1(b"payload", SIGNER, kid=b"kid-1")
    outer = cbor2.loads(data)
    assert isinstance(outer, cbor2.CBORTag)
    assert outer.tag == TAG_SIGN1
    protected, unprotected, payload, signature = outer.value
    assert protected == bytes.fromhex("a2012604456b69642d31")  # {1: -7, 4: h'6b69642d31'}
    assert unprotected == {}
    assert payload == b"payload"
    assert len(signature) == 64
    assert data.startswith(b"\xd2\x84\x4a")
    untagged = sign1(b"payload", SIGNER, tagged=False)
    assert untagged.startswith(b"\x84\x43\xa1\x01\x26\xa0\x47payload\x58\x40")
    assert len(untagged) == 6 + 8 + 2 + 64


def test_sign1_rejects_other_curves() -> None:
    with pytest.raises(ValueError, match="P-256"):
        sign1(b"x", LocalSigner(ec.generate_private_key(ec.SECP384R1())))


@pytest.mark.parametrize("length", [0, 1, 23, 24, 255, 256, 65535, 65536])
def test_bstr_head_is_the_shortest_form(length: int) -> None:
    encoded = cbor2.dumps(bytes(length), canonical=True)
    assert _bstr_head(length) == encoded[: len(encoded) - length]


@given(protected=st.binary(max_size=300), aad=st.binary(max_size=300), payload=st.binary())
def test_sig_structure_matches_cbor2_canonical(
    protected: bytes, aad: bytes, payload: bytes
) -> None:
    expected = cbor2.dumps(["Signature1", protected, aad, payload], canonical=True)
    assert _sig_structure(protected, aad, payload) == expected


def _reencode(msg: Sign1Message, **changes: Any) -> bytes:
    parts = {
        "protected_bytes": msg.protected_bytes,
        "unprotected": msg.unprotected,
        "payload": msg.payload,
        "signature": msg.signature,
        **changes,
    }
    return cbor2.dumps(
        cbor2.CBORTag(
            TAG_SIGN1,
            [parts["protected_bytes"], parts["unprotected"], parts["payload"], parts["signature"]],
        )
    )


def _signature_failure(data: bytes, key: ec.EllipticCurvePrivateKey = KEY) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify_sign1(decode_sign1(data), key.public_key())
    return info.value


SIGNED = decode_sign1(sign1(b"x" * 250, SIGNER, kid=b"kid-1"))


def test_tampered_payload() -> None:
    failure = _signature_failure(_reencode(SIGNED, payload=b"y" + SIGNED.payload[1:]))
    assert failure.check == "signature"


def test_tampered_protected_header() -> None:
    protected = cbor2.dumps({HEADER_ALG: ALG_ES256, HEADER_KID: b"kid-2"}, canonical=True)
    failure = _signature_failure(_reencode(SIGNED, protected_bytes=protected))
    assert failure.check == "signature"


def test_protected_header_is_verified_as_received_not_reencoded() -> None:
    # Same map, non-shortest encoding of -7: refused before any signature is checked.
    protected = b"\xa2\x01\x38\x06\x04\x45kid-1"
    assert cbor2.loads(protected) == SIGNED.protected
    with pytest.raises(DecodeError, match="protected header is not deterministic"):
        decode_sign1(_reencode(SIGNED, protected_bytes=protected))


def test_tampered_signature() -> None:
    signature = bytearray(SIGNED.signature)
    signature[40] ^= 0x01
    assert _signature_failure(_reencode(SIGNED, signature=bytes(signature))).check == "signature"


def test_unprotected_header_is_not_covered() -> None:
    # Documented RFC 9052 behaviour: an unprotected kid changes nothing that is verified.
    msg = decode_sign1(sign1(b"payload", SIGNER))
    moved = decode_sign1(_reencode(msg, unprotected={HEADER_KID: b"anything"}))
    assert moved.kid == b"anything"
    assert verify_sign1(moved, KEY.public_key()) == b"payload"


def test_kid_prefers_the_protected_header() -> None:
    protected = cbor2.dumps({HEADER_ALG: ALG_ES256, HEADER_KID: b"signed"})
    msg = Sign1Message(
        protected={HEADER_ALG: ALG_ES256, HEADER_KID: b"signed"},
        protected_bytes=protected,
        unprotected={HEADER_KID: b"unsigned"},
        payload=b"",
        signature=b"",
    )
    assert msg.kid == b"signed"
    assert dataclasses.replace(msg, protected={}).kid == b"unsigned"
    assert dataclasses.replace(msg, protected={}, unprotected={}).kid is None


def test_message_is_frozen_and_keyword_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SIGNED.payload = b"other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Sign1Message({}, b"", {}, b"", b"")  # type: ignore[call-arg]


def test_wrong_key() -> None:
    assert _signature_failure(_reencode(SIGNED), OTHER_KEY).check == "signature"


def test_non_ec_key() -> None:
    with pytest.raises(VerificationError) as info:
        verify_sign1(SIGNED, ed25519.Ed25519PrivateKey.generate().public_key())  # type: ignore[arg-type]
    assert info.value.check == "key"


@pytest.mark.parametrize("length", [0, 32, 63, 65, 70, 72, 128])
def test_wrong_length_signature(length: int) -> None:
    failure = _signature_failure(_reencode(SIGNED, signature=bytes(range(length))))
    assert failure.check == "signature"
    assert f"must be 64 bytes, got {length}" in str(failure)


def test_der_signature_is_rejected() -> None:
    r, s = decode_dss_signature(
        KEY.sign(
            _sig_structure(SIGNED.protected_bytes, b"", SIGNED.payload), ec.ECDSA(hashes.SHA256())
        )
    )
    der = encode_dss_signature(r, s)
    assert _signature_failure(_reencode(SIGNED, signature=der)).check == "signature"
    # The same r and s in raw form do verify (in the low-S form).
    raw = r.to_bytes(32) + min(s, P256_ORDER - s).to_bytes(32)
    assert verify_sign1(decode_sign1(_reencode(SIGNED, signature=raw)), KEY.public_key())


@pytest.mark.parametrize(
    "signature",
    [bytes(64), b"\xff" * 64, bytes(32) + b"\x01" * 32, b"\x01" * 32 + bytes(32)],
)
def test_out_of_range_r_s(signature: bytes) -> None:
    # r or s of 0 or >= n: cryptography must say "invalid", which becomes our check.
    assert _signature_failure(_reencode(SIGNED, signature=signature)).check == "signature"


def test_every_single_byte_change_is_rejected() -> None:
    data = sign1(b"claims" * 40, SIGNER, kid=b"kid-1")
    for position in range(len(data)):
        for flip in (0x01, 0x80):
            mutated = bytearray(data)
            mutated[position] ^= flip
            with pytest.raises(CoreError):
                verify_sign1(decode_sign1(bytes(mutated)), KEY.public_key())


def _with_protected(header: dict[Any, Any], unprotected: dict[Any, Any] | None = None) -> bytes:
    protected = cbor2.dumps(header, canonical=True)
    tbs = _sig_structure(protected, b"", b"payload")
    signature = SIGNER.sign(tbs)
    return cbor2.dumps(
        cbor2.CBORTag(TAG_SIGN1, [protected, unprotected or {}, b"payload", signature])
    )


def test_alg_missing() -> None:
    failure = _signature_failure(_with_protected({HEADER_KID: b"k"}))
    assert failure.check == "algorithm"
    assert str(failure) == "algorithm: alg must be in the protected header"


def test_alg_only_unprotected() -> None:
    data = _with_protected({HEADER_KID: b"k"}, {HEADER_ALG: ALG_ES256})
    failure = _signature_failure(data)
    assert failure.check == "algorithm"
    assert "only in the unprotected header" in str(failure)


@pytest.mark.parametrize("alg", [-35, -36, -8, 0, 7, "ES256", -257])
def test_other_algorithms(alg: int | str) -> None:
    failure = _signature_failure(_with_protected({HEADER_ALG: alg}))
    assert failure.check == "algorithm"


@pytest.mark.parametrize("critical", [[99], ["x-ext"], [HEADER_KID, 99], [3]])
def test_unknown_critical_header(critical: list[int | str]) -> None:
    header = {HEADER_ALG: ALG_ES256, HEADER_CRIT: critical, 99: 1, "x-ext": 1, 3: 0}
    failure = _signature_failure(_with_protected(header))
    assert failure.check == "crit"
    assert "refused" in str(failure)


def test_crit_in_unprotected_header() -> None:
    failure = _signature_failure(_with_protected({HEADER_ALG: ALG_ES256}, {HEADER_CRIT: [4]}))
    assert failure.check == "crit"
    assert "must be in the protected header" in str(failure)


# --- decoding: structure, size, hostile input ----------------------------------------------

PROTECTED = b"\x43\xa1\x01\x26"  # bstr wrapping {1: -7}
BODY = PROTECTED + b"\xa0" + b"\x41x" + b"\x41s"  # protected, {}, h'78', h'73'
ARRAY = b"\x84" + BODY


def test_minimal_structures_decode() -> None:
    for data in (ARRAY, b"\xd2" + ARRAY, b"\x84\x40\xa0\x40\x40"):
        msg = decode_sign1(data)
        assert msg.payload in (b"x", b"")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty input"),
        (b"\xd0" + ARRAY, "COSE_Encrypt0 (tag 16) is not a COSE_Sign1 (tag 18)"),
        (b"\xd1" + ARRAY, "COSE_Mac0 (tag 17) is not a COSE_Sign1 (tag 18)"),
        (b"\xd8\x60" + ARRAY, "COSE_Encrypt (tag 96) is not a COSE_Sign1 (tag 18)"),
        (b"\xd8\x61" + ARRAY, "COSE_Mac (tag 97) is not a COSE_Sign1 (tag 18)"),
        (b"\xd8\x62" + ARRAY, "COSE_Sign (tag 98) is not a COSE_Sign1 (tag 18)"),
        (b"\xd8\x3d\xd2" + ARRAY, "CWT (tag 61) is not a COSE_Sign1 (tag 18)"),
        (b"\xdb" + b"\xff" * 8 + ARRAY, f"CBOR tag {2**64 - 1} is not a COSE_Sign1 (tag 18)"),
        (b"\xd8", "truncated CBOR tag"),
        (b"\xdb\x00", "truncated CBOR tag"),
        (b"\xdc" + ARRAY, "malformed CBOR tag head 0xdc"),
        (b"\xdf" + ARRAY, "malformed CBOR tag head 0xdf"),
        (b"\xa0", "expected a COSE_Sign1 array, tagged 18 or untagged"),
        (b"\x43abc", "expected a COSE_Sign1 array, tagged 18 or untagged"),
        (b"\x00", "expected a COSE_Sign1 array, tagged 18 or untagged"),
        (b"\xd2\xa0", "COSE_Sign1 must be an array, got map"),
        (b"\xd2\x41x", "COSE_Sign1 must be an array, got bstr"),
        (b"\x83" + PROTECTED + b"\xa0\x41x", "COSE_Sign1 must be an array of 4, got 3"),
        (b"\x85" + BODY + b"\x40", "COSE_Sign1 must be an array of 4, got 5"),
        (b"\x80", "COSE_Sign1 must be an array of 4, got 0"),
        (b"\x84\x63abc\xa0\x41x\x41s", "protected header must be a bstr, got tstr"),
        (b"\x84\xa1\x01\x26\xa0\x41x\x41s", "protected header must be a bstr, got map"),
        (b"\x84" + PROTECTED + b"\x40\x41x\x41s", "unprotected header must be a map, got bstr"),
        (b"\x84" + PROTECTED + b"\x80\x41x\x41s", "unprotected header must be a map, got array"),
        (b"\x84" + PROTECTED + b"\xa0\xf6\x41s", "detached payload (nil) is not supported"),
        (b"\x84" + PROTECTED + b"\xa0\x61x\x41s", "payload must be a bstr, got tstr"),
        (b"\x84" + PROTECTED + b"\xa0\x01\x41s", "payload must be a bstr, got int"),
        (b"\x84" + PROTECTED + b"\xa0\x41x\x61s", "signature must be a bstr, got tstr"),
        (b"\x84" + PROTECTED + b"\xa0\x41x\xf6", "signature must be a bstr, got nil"),
        (b"\x84\x41\x80\xa0\x41x\x41s", "protected header must encode a map, got array"),
        (b"\x84\x41\x26\xa0\x41x\x41s", "protected header must encode a map, got int"),
        (b"\x84\x44\xa1\x01\x26\x00\xa0\x41x\x41s", "1 trailing byte(s) after protected header"),
        (ARRAY + b"\x00", "1 trailing byte(s) after COSE_Sign1"),
        (ARRAY + ARRAY, f"{len(ARRAY)} trailing byte(s) after COSE_Sign1"),
        (b"\xd2" + ARRAY + b"\xff", "1 trailing byte(s) after COSE_Sign1"),
        (b"\x84\x43\xa1\x01\x26\xa1\x01\x26\x41x\x41s", "labels ['1'] in both header buckets"),
        (
            b"\x84\x40\xa1\xf9\x3c\x00\x26\x41x\x41s",
            "unprotected header label float is not int/tstr",
        ),
        (b"\x84\x40\xa1\xf5\x26\x41x\x41s", "unprotected header label bool is not int/tstr"),
        (b"\x84\x40\xa1\xf6\x26\x41x\x41s", "unprotected header label nil is not int/tstr"),
        (b"\x84\x40\xa1\x41k\x26\x41x\x41s", "unprotected header label bstr is not int/tstr"),
        (b"\x84\x40\xa1\x80\x26\x41x\x41s", "unprotected header label array is not int/tstr"),
        (b"\x84\x43\xa1\xf5\x26\xa0\x41x\x41s", "protected header label bool is not int/tstr"),
        (b"\x84\x40\xa1\x04\x61k\x41x\x41s", "unprotected kid must be a bstr, got tstr"),
        (b"\x84\x44\xa1\x04\x61k\xa0\x41x\x41s", "protected kid must be a bstr, got tstr"),
        (b"\x84\x44\xa1\x01\x41\x26\xa0\x41x\x41s", "protected alg must be int or tstr, got bstr"),
        (
            b"\x84\x40\xa1\x01\xf9\x47\x00\x41x\x41s",
            "unprotected alg must be int or tstr, got float",
        ),
        (
            b"\x84\x43\xa1\x02\x80\xa0\x41x\x41s",
            "protected crit must be a non-empty array of labels",
        ),
        (
            b"\x84\x43\xa1\x02\x04\xa0\x41x\x41s",
            "protected crit must be a non-empty array of labels",
        ),
        (
            b"\x84\x44\xa1\x02\x81\x40\xa0\x41x\x41s",
            "protected crit must be a non-empty array of labels",
        ),
        (b"\x84\x43\xa1\x03\x20\xa0\x41x\x41s", "protected content type must be uint or tstr"),
        (b"\x84\x43\xa1\x03\x40\xa0\x41x\x41s", "protected content type must be uint or tstr"),
    ],
)
def test_malformed_structure(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_sign1(data)
    assert type(info.value) is DecodeError
    assert info.value.format_name == "cose"
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\x84" + PROTECTED + b"\xa2\x04\x41k\x04\x41k\x41x\x41s", "duplicate"),
        (b"\x84\x46\xa2\x01\x26\x01\x38\x06\xa0\x41x\x41s", "duplicate"),
        (b"\x9f" + BODY + b"\xff", "indefinite"),
        (b"\x84\x5f\x43\xa1\x01\x26\xff\xa0\x41x\x41s", "indefinite"),
        (b"\x84" + PROTECTED + b"\xbf\x04\x41k\xff\x41x\x41s", "indefinite"),
        (b"\x84" + PROTECTED + b"\xa1\x04\xc1\x01\x41x\x41s", "CBOR tag 1 is not allowed"),
        (b"\x84" + PROTECTED + b"\xa1\x05\xd8\x1c\x01\x41x\x41s", "CBOR tag 28 is not allowed"),
        (b"\x84" + PROTECTED + b"\xa1\x05\xd8\x23\x61(\x41x\x41s", "CBOR tag 35 is not allowed"),
        (b"\x84" + PROTECTED + b"\xa1\x05\xd8\x63\x01\x41x\x41s", "CBOR tag 99 is not allowed"),
        (b"\x84\x44\xa1\x05\xc2\x40\xa0\x41x\x41s", "CBOR tag 2 is not allowed"),
        (b"\xd2\xd2" + ARRAY, "CBOR tag 18 is not allowed"),
        (b"\x84" + PROTECTED + b"\xa0\x41x", "premature end"),
        (b"\x84\x5b" + b"\xff" * 8, "premature end"),
        (b"\x84" + PROTECTED + b"\xbb" + b"\xff" * 8, "premature end"),
        (b"\x9b" + b"\xff" * 8, "premature end"),
        (b"\x84\x42\xa1\x01\xa0\x41x\x41s", "premature end"),
        (b"\x84\x41\xff\xa0\x41x\x41s", "break"),
        (b"\x84" + PROTECTED + b"\xa1\x05\x62\xff\xfe\x41x\x41s", "string"),
    ],
)
def test_invalid_cbor(data: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_sign1(data)
    assert type(info.value) is DecodeError
    assert info.value.reason.startswith("invalid CBOR in ")
    assert fragment.lower() in info.value.reason.lower()


def test_size_limit_is_checked_before_decoding() -> None:
    garbage = b"\xff" * (MAX_SIGN1_SIZE + 1)
    with pytest.raises(InputTooLargeError) as info:
        decode_sign1(garbage)
    assert (info.value.size, info.value.limit) == (MAX_SIGN1_SIZE + 1, MAX_SIGN1_SIZE)
    with pytest.raises(InputTooLargeError):
        decode_sign1(ARRAY, max_size=len(ARRAY) - 1)
    assert decode_sign1(ARRAY, max_size=len(ARRAY)).payload == b"x"


def test_size_limit_allows_a_large_payload_when_raised() -> None:
    data = sign1(bytes(MAX_SIGN1_SIZE), SIGNER)
    with pytest.raises(InputTooLargeError):
        decode_sign1(data)
    msg = decode_sign1(data, max_size=2 * MAX_SIGN1_SIZE)
    assert verify_sign1(msg, KEY.public_key()) == bytes(MAX_SIGN1_SIZE)


@pytest.mark.parametrize("value", [bytearray(ARRAY), memoryview(ARRAY), ARRAY.hex(), None])
def test_non_bytes_input(value: object) -> None:
    with pytest.raises(DecodeError) as info:
        decode_sign1(value)  # type: ignore[arg-type]
    assert info.value.reason.startswith("expected bytes, got ")


@pytest.mark.parametrize(
    "data",
    [
        b"\x81" * 100_000,
        b"\x9f" * 100_000,
        b"\xa1\x01" * 100_000,
        b"\xd2\x84\x40\xa1\x05" + b"\x81" * 100_000,
        b"\x84\x5a\x00\x01\x86\xa0" + b"\x81" * 100_000 + b"\xa0\x41x\x41s",  # in protected
        b"\x84\x40\xa1\x05" + b"\xc1" * 100_000 + b"\x00",  # nested tags
    ],
)
def test_deep_nesting_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_sign1(data, max_size=len(data))
    assert type(info.value) is DecodeError


# --- property tests: whatever comes in, a message or a DecodeError comes out --------------


def _decode_and_verify(data: bytes) -> None:
    try:
        msg = decode_sign1(data)
    except DecodeError as exc:
        assert exc.format_name == "cose"
        return
    assert isinstance(msg, Sign1Message)
    try:
        assert verify_sign1(msg, KEY.public_key()) == msg.payload
    except VerificationError as exc:
        assert exc.check in {"algorithm", "crit", "header", "signature"}


@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    _decode_and_verify(data)


@given(st.sampled_from([b"", b"\x84", b"\xd2\x84", b"\xd2\x84" + PROTECTED]), st.binary())
def test_random_bytes_after_a_plausible_prefix(prefix: bytes, data: bytes) -> None:
    _decode_and_verify(prefix + data)


_KEYS = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.text(max_size=4)
    | st.binary(max_size=4)
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats()
    | st.binary(max_size=70)
    | st.text(max_size=8)
)
_TAGS = st.sampled_from([0, 1, 2, 16, 17, 18, 28, 29, 61, 96, 97, 98, 258, 55799]) | st.integers(
    min_value=0, max_value=2**64 - 1
)
CBOR_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(_KEYS, children, max_size=5)
        | st.builds(cbor2.CBORTag, _TAGS, children)
    ),
    max_leaves=20,
)
_LABELS = (
    st.sampled_from([HEADER_ALG, HEADER_CRIT, 3, HEADER_KID, 5])
    | st.integers()
    | st.text(max_size=3)
)
_HEADER_VALUES = st.sampled_from([ALG_ES256, -35, b"kid", [4], [99], []]) | CBOR_VALUES
HEADER_MAPS = st.dictionaries(_LABELS, _HEADER_VALUES, max_size=4) | st.dictionaries(
    _LABELS | _KEYS, _HEADER_VALUES, max_size=4
)


def _with_es256(header: dict[Any, Any]) -> bytes:
    return cbor2.dumps({**header, HEADER_ALG: ALG_ES256})


# Protected headers that pass the alg check, so the later checks get random input too.
_ES256_PROTECTED = HEADER_MAPS.map(_with_es256)
SIGN1_SHAPED = st.tuples(
    _ES256_PROTECTED | st.binary(max_size=8) | HEADER_MAPS.map(cbor2.dumps) | CBOR_VALUES,
    HEADER_MAPS | CBOR_VALUES,
    st.binary(max_size=40) | CBOR_VALUES,
    st.binary(min_size=62, max_size=66) | CBOR_VALUES,
).map(list)


@given(CBOR_VALUES)
def test_random_cbor(value: object) -> None:
    _decode_and_verify(cbor2.dumps(value))


@given(
    SIGN1_SHAPED | st.lists(CBOR_VALUES, max_size=5),
    st.none() | _TAGS,
    st.binary(max_size=3),
)
def test_random_sign1_shaped_cbor(value: list[object], tag: int | None, trailing: bytes) -> None:
    encoded = cbor2.dumps(value if tag is None else cbor2.CBORTag(tag, value))
    _decode_and_verify(encoded + trailing)


# --- the fast paths give exactly what the general cbor2 path gives -------------------------


def _outcome(func: Any, *args: object) -> object:
    try:
        return func(*args)
    except DecodeError as exc:
        return ("DecodeError", exc.reason)


_HEAD_WIDTHS = st.sampled_from([None, 1, 2, 4, 8])  # None: the shortest head


def _bstr(content: bytes, width: int | None) -> bytes:
    if width is None or len(content) >= 1 << (8 * width):
        return cbor2.dumps(content)
    return bytes((0x58 + width.bit_length() - 1,)) + len(content).to_bytes(width) + content


@given(
    st.binary(max_size=30),
    st.binary(max_size=300),
    st.binary(max_size=70),
    st.tuples(_HEAD_WIDTHS, _HEAD_WIDTHS, _HEAD_WIDTHS),
    st.sampled_from([b"", b"\xd2", b"\xd8\x12"]),
    st.sampled_from([b"\xa0", b"\xb8\x00", b"\xa1\x04\x41k", b"\x40"]),
    st.binary(max_size=3),
    st.integers(min_value=0, max_value=4),
)
def test_plain_split_matches_cbor2(
    protected: bytes,
    payload: bytes,
    signature: bytes,
    widths: tuple[int | None, int | None, int | None],
    tag: bytes,
    unprotected: bytes,
    trailing: bytes,
    cut: int,
) -> None:
    data = b"".join(
        (
            tag,
            b"\x84",
            _bstr(protected, widths[0]),
            unprotected,
            _bstr(payload, widths[1]),
            _bstr(signature, widths[2]),
            trailing,
        )
    )
    data = data[: len(data) - cut]
    offset = len(tag)
    plain = _split_plain(data, offset)
    general = _outcome(_split_cbor, data, offset)
    if plain is not None:
        assert general == plain
    shortest = all(
        _bstr(content, width) == cbor2.dumps(content)
        for content, width in zip((protected, payload, signature), widths, strict=True)
    )
    if unprotected == b"\xa0" and not trailing and not cut:
        assert plain == ((protected, {}, payload, signature) if shortest else None)
    assert _outcome(decode_sign1, data) == _decode_without_fast_paths(data)


def _decode_without_fast_paths(data: bytes) -> object:
    with (
        mock.patch.object(cose, "_split_plain", return_value=None),
        mock.patch.object(cose, "_decode_protected", cose._decode_protected_cbor),
    ):
        return _outcome(decode_sign1, data)


@given(st.binary(max_size=300))
def test_protected_fast_path_matches_cbor2_for_any_kid(kid: bytes) -> None:
    protected = cbor2.dumps({HEADER_ALG: ALG_ES256, HEADER_KID: kid}, canonical=True)
    assert _decode_protected(protected) == _decode_protected_cbor(protected)
    assert _decode_protected(protected) == {HEADER_ALG: ALG_ES256, HEADER_KID: kid}


@given(
    st.sampled_from([None, 0x40, 0x58]),
    st.integers(min_value=0, max_value=30),
    st.binary(max_size=32),
)
def test_protected_fast_path_matches_cbor2_near_its_form(
    head: int | None, claimed: int, content: bytes
) -> None:
    # The declared kid length and the bytes that follow agree, or miss by a little.
    if head is None:
        protected = b"\xa1\x01\x26" + content[:2]
    elif head == 0x40:
        protected = b"\xa2\x01\x26\x04" + bytes((0x40 + min(claimed, 23),)) + content
    else:
        protected = b"\xa2\x01\x26\x04\x58" + bytes((claimed,)) + content
    assert _outcome(_decode_protected, protected) == _outcome(_decode_protected_cbor, protected)


@pytest.mark.parametrize("form", ["short", "long"])
@pytest.mark.parametrize("extra", [-1, 1])
def test_protected_fast_path_rejects_a_wrong_kid_length(form: str, extra: int) -> None:
    kid = b"kid-0001"
    head = bytes((0x40 + len(kid),)) if form == "short" else bytes((0x58, len(kid)))
    protected = b"\xa2\x01\x26\x04" + head + (kid[:-1] if extra < 0 else kid + b"\x00")
    with pytest.raises(DecodeError):
        _decode_protected(protected)


@pytest.mark.parametrize("width", [None, 1, 2, 4, 8])
def test_plain_split_reads_every_head_form(width: int | None) -> None:
    for length in [*range(30), 255, 256, 1000]:
        protected, payload, signature = b"p" * (length % 7), b"x" * length, b"s" * (length % 66)
        body = b"".join(
            (
                b"\x84",
                _bstr(protected, width),
                b"\xa0",
                _bstr(payload, width),
                _bstr(signature, width),
            )
        )
        shortest = all(
            _bstr(content, width) == cbor2.dumps(content)
            for content in (protected, payload, signature)
        )
        # A head longer than needed is left to the general path, which refuses it.
        parts = (protected, {}, payload, signature) if shortest else None
        assert _split_plain(body, 0) == parts
        assert _split_plain(b"\xd2" + body, 1) == parts
        assert _split_plain(body + b"\x00", 0) is None
        assert _split_plain(body[:-1], 0) is None


_SIGNER = LocalSigner(ec.generate_private_key(ec.SECP256R1()))


@given(
    payload=st.binary(max_size=400),
    kid=st.none() | st.binary(max_size=40),
    aad=st.binary(max_size=30),
    tagged=st.booleans(),
)
def test_sign1_writes_cbor2s_canonical_bytes_and_verifies(
    payload: bytes, kid: bytes | None, aad: bytes, tagged: bool
) -> None:
    encoded = cose.sign1(payload, _SIGNER, kid=kid, external_aad=aad, tagged=tagged)
    header = {cose.HEADER_ALG: cose.ALG_ES256} | ({} if kid is None else {cose.HEADER_KID: kid})
    protected = cbor2.dumps(header, canonical=True)
    signature = cbor2.loads(encoded)
    signature = (signature.value if tagged else signature)[3]
    message = [protected, {}, payload, signature]
    assert encoded == cbor2.dumps(cbor2.CBORTag(18, message) if tagged else message)
    msg = decode_sign1(encoded)
    key = _SIGNER.private_key.public_key()
    assert verify_sign1(msg, key, external_aad=aad) == payload


# --- the encoding profile: one encoding for what the issuer signs (issue 15, part 4) -------

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _signed_with(protected: bytes, payload: bytes = b"payload") -> bytes:
    """A tagged COSE_Sign1 over ``protected`` exactly, correctly signed by SIGNER."""
    signature = SIGNER.sign(_sig_structure(protected, b"", payload))
    return (
        b"\xd2\x84"
        + _bstr_head(len(protected))
        + protected
        + b"\xa0"
        + (_bstr_head(len(payload)) + payload + b"\x58\x40" + signature)
    )


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"\xd2\x84\x4a", b"\xd2\x84\x58\x0a"),  # protected bstr: 1-byte length for 10
        (b"\xd2\x84\x4a", b"\xd2\x84\x59\x00\x0a"),
        (b"\xd2", b"\xd8\x12"),  # tag 18 in two bytes
    ],
)
def test_non_minimal_heads_of_the_envelope_are_refused(before: bytes, after: bytes) -> None:
    data = sign1(b"payload", SIGNER, kid=b"kid-1")
    assert data.startswith(before)
    stretched = after + data[len(before) :]
    with pytest.raises(DecodeError) as info:
        decode_sign1(stretched)
    assert "deterministic" in info.value.reason or "shortest" in info.value.reason


def test_non_minimal_payload_and_signature_lengths_are_refused() -> None:
    data = sign1(b"payload", SIGNER, kid=b"kid-1")
    for before, after in ((b"\x47payload", b"\x58\x07payload"), (b"\x58\x40", b"\x59\x00\x40")):
        with pytest.raises(DecodeError, match="deterministic"):
            decode_sign1(data.replace(before, after, 1))


@pytest.mark.parametrize(
    "protected",
    [
        b"\xa2\x01\x26\x04\x58\x05kid-1",  # kid length in a needless extra byte
        b"\xa2\x01\x38\x06\x04\x45kid-1",  # -7 in two bytes
        b"\xa2\x04\x45kid-1\x01\x26",  # keys out of order
    ],
)
def test_protected_header_must_be_deterministic(protected: bytes) -> None:
    assert cbor2.loads(protected) == {HEADER_ALG: ALG_ES256, HEADER_KID: b"kid-1"}
    with pytest.raises(DecodeError, match="deterministic"):
        decode_sign1(_signed_with(protected))


def test_high_s_signature_is_refused() -> None:
    signature = SIGNED.signature
    s = int.from_bytes(signature[32:])
    assert s <= P256_ORDER // 2, "sign1 writes low-S"
    high = signature[:32] + (P256_ORDER - s).to_bytes(32)
    der = encode_dss_signature(int.from_bytes(high[:32]), P256_ORDER - s)
    KEY.public_key().verify(der, _to_be_signed(SIGNED, b""), ec.ECDSA(hashes.SHA256()))
    failure = _signature_failure(_reencode(SIGNED, signature=high))
    assert failure.check == "signature"
    assert "low-S" in str(failure)


class _HighSSigner:
    """A signer (an HSM, say) that returns whichever s its ECDSA drew, here always high."""

    alg = "ES256"
    kid = "k"

    def sign(self, data: bytes) -> bytes:
        der = KEY.sign(data, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32) + max(s, P256_ORDER - s).to_bytes(32)

    def verifying_key(self) -> Any:
        return SIGNER.verifying_key()


def test_sign1_writes_low_s_whatever_the_signer_returns() -> None:
    for n in range(8):
        msg = decode_sign1(sign1(b"payload %d" % n, _HighSSigner(), kid=b"k"))
        assert int.from_bytes(msg.signature[32:]) <= P256_ORDER // 2
        assert verify_sign1(msg, KEY.public_key()) == b"payload %d" % n


def test_local_signer_writes_low_s() -> None:
    for n in range(16):
        assert int.from_bytes(SIGNER.sign(b"%d" % n)[32:]) <= P256_ORDER // 2


@pytest.mark.parametrize("critical", [[HEADER_KID], [HEADER_ALG, HEADER_KID], [99]])
def test_crit_is_refused(critical: list[int]) -> None:
    header = {HEADER_ALG: ALG_ES256, HEADER_CRIT: critical, HEADER_KID: b"k"}
    failure = _signature_failure(_with_protected(header))
    assert failure.check == "crit"


@pytest.mark.parametrize("label", [3, 5, -70000, "x-ext"])
def test_unknown_protected_labels_are_refused(label: int | str) -> None:
    failure = _signature_failure(_with_protected({HEADER_ALG: ALG_ES256, label: 0}))
    assert failure.check == "header"
    assert repr(label) in str(failure)


def _deterministic(value: object) -> bytes:
    """RFC 8949 section 4.2.1 written out independently: maps sorted by encoded key bytes."""
    if isinstance(value, dict):
        items = sorted((_deterministic(k), _deterministic(v)) for k, v in value.items())
        head = cbor2.dumps({i: 0 for i in range(len(items))})[: -2 * len(items) or None]
        return (head if items else b"\xa0") + b"".join(k + v for k, v in items)
    if isinstance(value, list):
        head = cbor2.dumps([0] * len(value))[: -len(value) or None]
        return (head if value else b"\x80") + b"".join(_deterministic(v) for v in value)
    return cbor2.dumps(value)


_CBOR_VALUES = st.recursive(
    st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=30) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.integers(-(2**40), 2**40) | st.text(max_size=4) | st.binary(max_size=4),
                      inner, max_size=5),
    max_leaves=12,
)  # fmt: skip


@given(value=_CBOR_VALUES)
def test_decode_cbor_takes_exactly_the_deterministic_encoding(value: object) -> None:
    encoded = _deterministic(value)
    assert cose.decode_cbor(encoded, what="x") == value
    as_given = cbor2.dumps(value)  # maps in insertion order
    if as_given == encoded:
        assert cose.decode_cbor(as_given, what="x") == value
    else:
        with pytest.raises(DecodeError, match="deterministic"):
            cose.decode_cbor(as_given, what="x")


@given(data=st.binary(max_size=80))
def test_decode_cbor_random_bytes_give_a_value_or_a_decode_error(data: bytes) -> None:
    try:
        value = cose.decode_cbor(data, what="x")
    except DecodeError:
        return
    assert _deterministic(value) == data  # whatever is taken is in its one encoding


@pytest.mark.parametrize(
    "data",
    [
        b"\x18\x05",  # 5 in two bytes
        b"\x19\x00\x18",
        b"\x38\x00",  # -1 in two bytes
        b"\x58\x01x",
        b"\x78\x01x",
        b"\x98\x01\x00",
        b"\xb8\x01\x00\x00",
        b"\xa2\x02\x00\x01\x00",  # keys out of order
        b"\xa2\x20\x00\x19\x03\xe8\x00",  # -1 before 1000: length-first, not bytewise
        b"\xf9\x3e\x00",  # a float: none of our structures holds one
        b"\xfb\x3f\xf8\x00\x00\x00\x00\x00\x00",
        # Found by fuzz/fuzz_cose_sign1.py: infinities re-encode in half precision, so the
        # float check, which looked for float64 and NaN heads only, let them through.
        b"\xf9\x7c\x00",  # +inf
        b"\xf9\xfc\x00",  # -inf
        b"\x82\x01\xf9\x7c\x00",  # [1, inf]
    ],
)
def test_decode_cbor_refuses_other_encodings(data: bytes) -> None:
    with pytest.raises(DecodeError):
        cose.decode_cbor(data, what="x")


def test_decode_cbor_takes_bytewise_key_order() -> None:
    assert cose.decode_cbor(b"\xa2\x19\x03\xe8\x00\x20\x00", what="x") == {1000: 0, -1: 0}
