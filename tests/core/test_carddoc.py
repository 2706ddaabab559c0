"""Card documents: round trip, every failed check named, RFC 8725 attacks refused."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.core.carddoc import CARD_DOCUMENT_TYP, CardDocument, verify_card_document
from cardsvc.core.errors import CoreError, DecodeError, InputTooLargeError, VerificationError
from cardsvc.core.identity import CardNumber, CitizenId, RegionCode, Sex
from cardsvc.core.keys import KeyPurpose, b64url_encode
from cardsvc.core.references import StatusReference
from cardsvc.core.signing import sign_jws
from tests.core.conftest import NOW, Issuer, make_trust_list, new_signer

LEEWAY = timedelta(seconds=30)


def sample(issuer: Issuer) -> CardDocument:
    return CardDocument(
        issuer="https://issuer.test",
        card_number=CardNumber.parse("A12345678"),
        citizen_id=CitizenId.parse("11010519491231002X"),
        name="张三",
        sex=Sex.FEMALE,
        birth_date=date(1949, 12, 31),
        region=RegionCode.parse("110105"),
        issue_date=date(2024, 3, 1),
        expiry_date=date(2034, 3, 1),
        chip_key=new_signer().verifying_key(),
        status=StatusReference(idx=4242, uri="https://issuer.test/v1/status-lists/7"),
        issued_at=NOW - timedelta(days=1),
    )


def verify(issuer: Issuer, token: str, **kw: Any) -> CardDocument:
    kw.setdefault("now", NOW)
    kw.setdefault("leeway", LEEWAY)
    return verify_card_document(token, trust_list=issuer.trust_list, **kw)


def check_of(issuer: Issuer, token: str, **kw: Any) -> str:
    with pytest.raises(VerificationError) as info:
        verify(issuer, token, **kw)
    return info.value.check


def forge(header: dict[str, Any], claims: dict[str, Any], sign: bytes = b"\0" * 64) -> str:
    part = lambda obj: b64url_encode(json.dumps(obj).encode())  # noqa: E731
    return f"{part(header)}.{part(claims)}.{b64url_encode(sign)}"


def test_round_trip(issuer: Issuer) -> None:
    doc = sample(issuer)
    token = doc.sign(issuer.signer(KeyPurpose.CARD_DOCUMENT))
    header = jwt.get_unverified_header(token)
    assert header["typ"] == CARD_DOCUMENT_TYP and header["alg"] == "ES256"
    verified = verify_card_document(
        token, trust_list=issuer.trust_list, now=NOW, leeway=LEEWAY, issuer="https://issuer.test"
    )
    assert verified == doc
    with pytest.raises(VerificationError) as info:
        verify_card_document(
            token, trust_list=issuer.trust_list, now=NOW, leeway=LEEWAY, issuer="https://x.test"
        )
    assert info.value.check == "issuer"
    claims = doc.to_claims()
    assert claims["status"] == {"status_list": {"idx": 4242, "uri": doc.status.uri}}
    assert set(claims["cnf"]["jwk"]) == {"kty", "crv", "x", "y", "kid"}


def test_time_checks_use_the_explicit_leeway(issuer: Issuer) -> None:
    doc = sample(issuer)
    token = doc.sign(issuer.signer(KeyPurpose.CARD_DOCUMENT))
    end = doc.expires_at
    assert verify(issuer, token, now=end - timedelta(days=1)) == doc
    assert check_of(issuer, token, now=end + timedelta(seconds=31)) == "expired"
    assert verify(issuer, token, now=end + timedelta(seconds=29), leeway=LEEWAY) == doc
    future = replace(doc, issued_at=NOW + timedelta(minutes=5))
    future_token = future.sign(issuer.signer(KeyPurpose.CARD_DOCUMENT))
    assert check_of(issuer, future_token) == "issued-in-future"
    assert verify(issuer, future_token, leeway=timedelta(minutes=6)) == future


def test_tampered_signature_and_payload(issuer: Issuer) -> None:
    token = sample(issuer).sign(issuer.signer(KeyPurpose.CARD_DOCUMENT))
    h, p, s = token.split(".")
    other = replace(sample(issuer), name="李四").sign(issuer.signer(KeyPurpose.CARD_DOCUMENT))
    assert check_of(issuer, f"{h}.{other.split('.')[1]}.{s}") == "signature"
    flipped = s[:-2] + ("AA" if s[-2:] != "AA" else "BA")
    assert check_of(issuer, f"{h}.{p}.{flipped}") == "signature"


def test_wrong_purpose_unknown_key_and_window(issuer: Issuer) -> None:
    doc = sample(issuer)
    assert check_of(issuer, doc.sign(issuer.signer(KeyPurpose.ECARD))) == "key-purpose"
    assert check_of(issuer, doc.sign(new_signer())) == "key-unknown"
    signers = {KeyPurpose.CARD_DOCUMENT: issuer.signer(KeyPurpose.CARD_DOCUMENT)}
    old = make_trust_list(signers, now=NOW - timedelta(days=4000))
    token = doc.sign(issuer.signer(KeyPurpose.CARD_DOCUMENT))
    with pytest.raises(VerificationError) as info:
        verify_card_document(token, trust_list=old, now=NOW, leeway=LEEWAY)
    assert info.value.check == "key-window"


def test_rfc8725_alg_none_and_hs256_with_public_key(issuer: Issuer) -> None:
    signer = issuer.signer(KeyPurpose.CARD_DOCUMENT)
    claims = sample(issuer).to_claims()
    header = {"typ": CARD_DOCUMENT_TYP, "kid": signer.kid}
    none = forge({**header, "alg": "none"}, claims, b"")
    assert check_of(issuer, none) == "algorithm"
    public_pem = signer.verifying_key().public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    signing_input = forge({**header, "alg": "HS256"}, claims).rsplit(".", 1)[0]
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert check_of(issuer, f"{signing_input}.{b64url_encode(mac)}") == "algorithm"
    es512 = forge({**header, "alg": "ES512"}, claims)
    assert check_of(issuer, es512) == "algorithm"


def test_rfc8725_header_cannot_choose_the_key(issuer: Issuer) -> None:
    attacker = new_signer()
    doc = sample(issuer)
    for extra in (
        {"jku": "https://evil.test/jwks.json"},
        {"jwk": attacker.verifying_key().jwk()},
        {"x5u": "https://evil.test/cert"},
    ):
        token = sign_jws({"typ": CARD_DOCUMENT_TYP, **extra}, doc.to_claims(), attacker)
        assert check_of(issuer, token) == "key-unknown"
    kidless = forge({"typ": CARD_DOCUMENT_TYP, "alg": "ES256"}, doc.to_claims())
    assert check_of(issuer, kidless) == "key-unknown"


def test_crit_and_typ(issuer: Issuer) -> None:
    signer = issuer.signer(KeyPurpose.CARD_DOCUMENT)
    claims = sample(issuer).to_claims()
    crit = sign_jws({"typ": CARD_DOCUMENT_TYP, "crit": ["exp"], "exp": 1}, claims, signer)
    assert check_of(issuer, crit) == "crit"
    assert check_of(issuer, sign_jws({"typ": "JWT"}, claims, signer)) == "typ"
    assert check_of(issuer, sign_jws({}, claims, signer)) == "typ"


def test_duplicate_missing_unknown_and_inconsistent_claims(issuer: Issuer) -> None:
    signer = issuer.signer(KeyPurpose.CARD_DOCUMENT)
    claims = sample(issuer).to_claims()
    header = {"typ": CARD_DOCUMENT_TYP, "alg": "ES256", "kid": signer.kid}
    # Duplicate member: the payload JSON names "name" twice; a last-wins parser would
    # show one name and verify another.
    body = json.dumps(claims)[:-1] + ', "name": "李四"}'
    signing_input = f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(body.encode())}"
    token = f"{signing_input}.{b64url_encode(signer.sign(signing_input.encode()))}"
    with pytest.raises(DecodeError, match="duplicate member 'name'"):
        verify(issuer, token)
    for name in ("exp", "iat", "cnf", "status", "id_no"):
        bad = {k: v for k, v in claims.items() if k != name}
        assert check_of(issuer, sign_jws({"typ": CARD_DOCUMENT_TYP}, bad, signer)) == "claims"
    for key, value in [
        ("extra", 1),
        ("sex", "M"),
        ("sex", "X"),
        ("birth_date", "1949-12-30"),
        ("id_no", "110101199003074478"),
        ("card_no", "a-1"),
        ("name", ""),
        ("name", "a\x00b"),
        ("region", "990000"),
        ("expires", "2034-02-30"),
        ("iat", "yesterday"),
        ("status", {"status_list": {"idx": -1, "uri": "https://x"}}),
        ("cnf", {"jwk": {"kty": "RSA"}}),
        ("exp", claims["exp"] + 86400),
    ]:
        token = sign_jws({"typ": CARD_DOCUMENT_TYP}, {**claims, key: value}, signer)
        assert check_of(issuer, token) == "claims", (key, value)


def test_oversized_input_is_refused_before_decoding(issuer: Issuer) -> None:
    with pytest.raises(InputTooLargeError):
        verify(issuer, "a" * 9000)


@given(st.text(max_size=300))
def test_random_text_gives_a_document_or_a_typed_error(text: str) -> None:
    signers = {KeyPurpose.CARD_DOCUMENT: new_signer()}
    trust_list = make_trust_list(signers)
    with pytest.raises(CoreError):
        verify_card_document(text, trust_list=trust_list, now=NOW, leeway=LEEWAY)


@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "typ", "kid", "crit", "jku"]),
        st.one_of(st.text(max_size=8), st.integers(), st.none()),
        max_size=5,
    ),
    claims=st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=6),
)
def test_random_json_parts_give_typed_errors(
    issuer: Issuer, header: dict[str, Any], claims: dict[str, Any]
) -> None:
    with pytest.raises(CoreError):
        verify(issuer, forge(header, claims))


def test_high_s_signature_is_refused_and_the_signer_writes_low_s(issuer: Issuer) -> None:
    """Issue 15, part 4: (r, n - s) verifies under ES256 but is a second encoding."""
    from cardsvc.core.keys import b64url_decode
    from cardsvc.core.signing import P256_ORDER

    for n in range(6):
        token = replace(sample(issuer), name=f"张三{n}").sign(
            issuer.signer(KeyPurpose.CARD_DOCUMENT)
        )
        h, p, s = token.split(".")
        raw = b64url_decode(s)
        low = int.from_bytes(raw[32:])
        assert low <= P256_ORDER // 2
        verify(issuer, token)
        high = raw[:32] + (P256_ORDER - low).to_bytes(32)
        with pytest.raises(VerificationError) as failure:
            verify(issuer, f"{h}.{p}.{b64url_encode(high)}")
        assert failure.value.check == "signature"
        assert "low-S" in str(failure.value)
