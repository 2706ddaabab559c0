"""E-card QR tokens: codec, minimal disclosure, every failed check named, QR size."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import cbor2
import pytest
import qrcode
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.core import cose
from cardsvc.core.base45 import b45decode, b45encode
from cardsvc.core.errors import CoreError, DecodeError, InputTooLargeError, VerificationError
from cardsvc.core.keys import KeyPurpose, short_kid
from cardsvc.core.qrtoken import (
    CLAIM_SSC,
    PURPOSE_ATTRIBUTES,
    SCHEME_PREFIX,
    Attribute,
    Purpose,
    QrToken,
    encode_qr_token,
    verify_qr_token,
)
from tests.core.conftest import NOW, Issuer, make_trust_list, new_signer

LEEWAY = timedelta(seconds=5)
ID_NO = "11010519491231002X"

TYPICAL: dict[Purpose, dict[Attribute, Any]] = {
    Purpose.IDENTITY: {
        Attribute.NAME: "欧阳娜娜",
        Attribute.ID_NO: ID_NO,
        Attribute.PHOTO_REF: bytes(range(8)),
    },
    Purpose.BENEFIT: {Attribute.NAME: "欧阳娜娜", Attribute.ID_NO: ID_NO},
    Purpose.MEDICAL: {
        Attribute.NAME: "欧阳娜娜",
        Attribute.ID_NO: ID_NO,
        Attribute.INSURED_REGION: "110105",
    },
    Purpose.FEE: {Attribute.NAME: "欧阳娜娜", Attribute.ID_NO: ID_NO},
    Purpose.TRANSPORT: {Attribute.CONCESSION: 1, Attribute.CONCESSION_UNTIL: date(2030, 6, 30)},
    Purpose.TOURISM: {Attribute.CONCESSION: 1, Attribute.AGE_OVER: 60},
    Purpose.CULTURE: {Attribute.CONCESSION: 2, Attribute.AGE_OVER: 65},
}


def token(purpose: Purpose = Purpose.IDENTITY, **kw: Any) -> QrToken:
    fields: dict[str, Any] = {
        "issuer": "cn-ssc",
        "purpose": purpose,
        "ecard_ref": b"\x01" * 8,
        "jti": secrets.token_bytes(8),
        "issued_at": NOW,
        "expires_at": NOW + timedelta(seconds=60),
        "status_shard": 3,
        "status_idx": 101_010,
        "attributes": TYPICAL[purpose],
    }
    fields.update(kw)
    return QrToken(**fields)


def verify(issuer: Issuer, text: str, **kw: Any) -> QrToken:
    kw.setdefault("now", NOW + timedelta(seconds=10))
    kw.setdefault("leeway", LEEWAY)
    return verify_qr_token(text, trust_list=issuer.trust_list, **kw)


def check_of(issuer: Issuer, text: str, **kw: Any) -> str:
    with pytest.raises(VerificationError) as info:
        verify(issuer, text, **kw)
    return info.value.check


def qr_version(text: str) -> int:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    qr.make(fit=True)
    assert qr.data_list[0].mode == qrcode.util.MODE_ALPHA_NUM
    version: int = qr.version
    return version


def sign_claims(issuer: Issuer, claims: object, *, kid: bytes | None = None) -> str:
    signer = issuer.signer(KeyPurpose.ECARD)
    message = cose.sign1(cose.encode_cbor(claims), signer, kid=kid or short_kid(signer.kid))
    return SCHEME_PREFIX + b45encode(message)


@pytest.mark.parametrize("purpose", list(Purpose))
def test_round_trip_and_qr_version_per_purpose(issuer: Issuer, purpose: Purpose) -> None:
    original = token(purpose)
    text = encode_qr_token(original, issuer.signer(KeyPurpose.ECARD))
    assert text.startswith(SCHEME_PREFIX)
    assert verify(issuer, text, purpose=purpose) == original
    assert qr_version(text) <= 10, len(text)


def test_transport_discloses_no_identity(issuer: Issuer) -> None:
    assert not PURPOSE_ATTRIBUTES[Purpose.TRANSPORT] & {Attribute.NAME, Attribute.ID_NO}
    for attr, value in ((Attribute.NAME, "张三"), (Attribute.ID_NO, ID_NO)):
        with pytest.raises(DecodeError, match="must not disclose"):
            token(Purpose.TRANSPORT, attributes={**TYPICAL[Purpose.TRANSPORT], attr: value})
    # A validly signed token that over-discloses is refused by the verifier too.
    claims = token(Purpose.TRANSPORT).to_cbor_claims()
    claims[CLAIM_SSC][4][int(Attribute.NAME)] = "张三"
    assert check_of(issuer, sign_claims(issuer, claims)) == "claims"


def test_json_view(issuer: Issuer) -> None:
    view = token(Purpose.TRANSPORT).to_json(status_base_uri="https://issuer.test/v1/status")
    assert view["purpose"] == "transport"
    assert view["attributes"] == {"concession": 1, "concession_until": "2030-06-30"}
    assert view["status"] == {
        "status_list": {"idx": 101_010, "uri": "https://issuer.test/v1/status/3"}
    }
    assert "name" not in view["attributes"] and "id_no" not in view["attributes"]


def test_time_window_and_purpose(issuer: Issuer) -> None:
    text = encode_qr_token(token(), issuer.signer(KeyPurpose.ECARD))
    assert check_of(issuer, text, now=NOW + timedelta(seconds=66)) == "expired"
    assert verify(issuer, text, now=NOW + timedelta(seconds=64)).purpose is Purpose.IDENTITY
    assert check_of(issuer, text, now=NOW - timedelta(seconds=6)) == "issued-in-future"
    assert check_of(issuer, text, purpose=Purpose.TRANSPORT) == "purpose"


def test_keys_come_from_the_trust_list_for_their_purpose(issuer: Issuer) -> None:
    t = token()
    card_key = issuer.signer(KeyPurpose.CARD_DOCUMENT)
    assert check_of(issuer, encode_qr_token(t, card_key)) == "key-purpose"
    assert check_of(issuer, encode_qr_token(t, new_signer())) == "key-unknown"
    ecard = issuer.signer(KeyPurpose.ECARD)
    old = make_trust_list({KeyPurpose.ECARD: ecard}, now=NOW - timedelta(days=4000))
    with pytest.raises(VerificationError) as info:
        verify_qr_token(encode_qr_token(t, ecard), trust_list=old, now=NOW, leeway=LEEWAY)
    assert info.value.check == "key-window"


def test_kid_only_in_unprotected_header_is_refused(issuer: Issuer) -> None:
    signer = issuer.signer(KeyPurpose.ECARD)
    payload = cbor2.dumps(token().to_cbor_claims())
    message = list(cbor2.loads(cose.sign1(payload, signer)).value)  # no kid in protected
    message[1] = {cose.HEADER_KID: short_kid(signer.kid)}
    text = SCHEME_PREFIX + b45encode(cbor2.dumps(cbor2.CBORTag(18, message)))
    assert check_of(issuer, text) == "key-unknown"


def test_tampering_is_detected(issuer: Issuer) -> None:
    text = encode_qr_token(token(), issuer.signer(KeyPurpose.ECARD))
    raw = bytearray(b45decode(text[len(SCHEME_PREFIX) :]))
    raw[-70] ^= 0x01  # inside the payload
    tampered = SCHEME_PREFIX + b45encode(bytes(raw))
    with pytest.raises(CoreError):
        verify(issuer, tampered)
    raw = bytearray(b45decode(text[len(SCHEME_PREFIX) :]))
    raw[-1] ^= 0x01  # the signature
    assert check_of(issuer, SCHEME_PREFIX + b45encode(bytes(raw))) == "signature"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.pop(7),
        lambda c: c.__setitem__(99, 1),
        lambda c: c.__setitem__(4, "soon"),
        lambda c: c.__setitem__(7, b"short"),
        lambda c: c[CLAIM_SSC].__setitem__(1, 99),
        lambda c: c[CLAIM_SSC].__setitem__(3, [1]),
        lambda c: c[CLAIM_SSC].__setitem__(3, [1, -1]),
        lambda c: c[CLAIM_SSC].__setitem__(2, "not bytes"),
        lambda c: c[CLAIM_SSC][4].__setitem__(99, 1),
        lambda c: c[CLAIM_SSC][4].__setitem__(2, "110101199003074478"),  # check character
        lambda c: c[CLAIM_SSC][4].__setitem__(2, "11010519491231002x"),  # not the form
        lambda c: c[CLAIM_SSC][4].__setitem__(2, "1101051949123100"),
        lambda c: c[CLAIM_SSC].__setitem__(9, 1),
        lambda c: c.__setitem__(4, c[6] - 1),
    ],
)
def test_malformed_claims_are_named(issuer: Issuer, mutate: Any) -> None:
    claims = token().to_cbor_claims()
    mutate(claims)
    assert check_of(issuer, sign_claims(issuer, claims)) == "claims"


def test_id_number_rules_on_build_and_on_verify(issuer: Issuer) -> None:
    # A real calendar date is one of the rules that building a token enforces ...
    bad_date = "110105194913310021"  # 13th month, right check character
    with pytest.raises(CoreError, match="not a calendar date"):
        token(Purpose.IDENTITY, attributes={Attribute.ID_NO: bad_date})
    # ... and the verifier leaves to the issuer's signature: it checks form and check
    # character only (see qrtoken._check_id_no).
    claims = token().to_cbor_claims()
    claims[CLAIM_SSC][4][2] = bad_date
    verified = verify(issuer, sign_claims(issuer, claims))
    assert verified.attributes[Attribute.ID_NO] == bad_date


def test_wrong_prefix_size_and_alphabet(issuer: Issuer) -> None:
    text = encode_qr_token(token(), issuer.signer(KeyPurpose.ECARD))
    with pytest.raises(DecodeError, match="SSC1"):
        verify(issuer, "HC1:" + text[len(SCHEME_PREFIX) :])
    with pytest.raises(InputTooLargeError):
        verify(issuer, SCHEME_PREFIX + "0" * 5000)
    with pytest.raises(DecodeError):
        verify(issuer, text.lower())


def test_token_invariants() -> None:
    with pytest.raises(DecodeError):
        token(jti=b"123")
    with pytest.raises(DecodeError):
        token(expires_at=NOW)
    with pytest.raises(DecodeError):
        token(status_idx=2**32)
    assert replace(token(), status_idx=5).status_idx == 5


@given(st.text(max_size=400))
def test_random_text_gives_a_token_or_a_typed_error(issuer: Issuer, text: str) -> None:
    with pytest.raises(CoreError):
        verify(issuer, text)
    with pytest.raises(CoreError):
        verify(issuer, SCHEME_PREFIX + text)


@given(st.binary(max_size=300))
def test_random_cose_bytes_give_typed_errors(issuer: Issuer, data: bytes) -> None:
    with pytest.raises(CoreError):
        verify(issuer, SCHEME_PREFIX + b45encode(data))


CBOR_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.binary(max_size=12)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.integers(-70000, 10) | st.text(max_size=3), inner, max_size=5)
    ),
    max_leaves=25,
)


@given(CBOR_VALUES)
def test_validly_signed_random_claims_give_typed_errors(issuer: Issuer, claims: object) -> None:
    with pytest.raises(CoreError):
        verify(issuer, sign_claims(issuer, claims))


# --- one encoding: the claims are deterministic CBOR (issue 15, part 4) ---------------------


def test_encoder_writes_attributes_in_key_order_whatever_order_they_were_given() -> None:
    given_backwards = dict(reversed(list(TYPICAL[Purpose.IDENTITY].items())))
    claims = token(Purpose.IDENTITY, attributes=given_backwards).to_cbor_claims()
    assert list(claims[CLAIM_SSC][4]) != sorted(claims[CLAIM_SSC][4])
    payload = cose.encode_cbor(claims)
    assert list(cose.decode_cbor(payload, what="x")[CLAIM_SSC][4]) == [1, 2, 3]  # type: ignore[index]


@pytest.mark.parametrize(
    "respell",
    [
        lambda p: p.replace(b"\xa3\x01", b"\xb8\x03\x01", 1),  # attribute map head in 2 bytes
        lambda p: p.replace(b"\x04\x1a", b"\x04\x1b\x00\x00\x00\x00", 1),  # exp in 8 bytes
        lambda p: p.replace(b"\x01\x66cn-ssc", b"\x01\x78\x06cn-ssc", 1),  # iss length
    ],
)
def test_claims_in_another_encoding_are_refused_though_validly_signed(
    issuer: Issuer, respell: Any
) -> None:
    payload = cose.encode_cbor(token(Purpose.IDENTITY).to_cbor_claims())
    respelled = respell(payload)
    assert respelled != payload and cbor2.loads(respelled) == cbor2.loads(payload)
    signer = issuer.signer(KeyPurpose.ECARD)
    text = SCHEME_PREFIX + b45encode(cose.sign1(respelled, signer, kid=short_kid(signer.kid)))
    with pytest.raises(DecodeError, match="deterministic"):
        verify(issuer, text)


def test_claims_with_keys_out_of_order_are_refused_though_validly_signed(issuer: Issuer) -> None:
    claims = token(Purpose.IDENTITY).to_cbor_claims()
    backwards = dict(reversed(list(claims.items())))
    signer = issuer.signer(KeyPurpose.ECARD)
    payload = cbor2.dumps(backwards)
    text = SCHEME_PREFIX + b45encode(cose.sign1(payload, signer, kid=short_kid(signer.kid)))
    with pytest.raises(DecodeError, match="deterministic order"):
        verify(issuer, text)
