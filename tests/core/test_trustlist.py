"""Trust lists: pinned root, rollback refused, keys only for their purpose and window."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.core.errors import CoreError, DecodeError, VerificationError
from cardsvc.core.keys import KeyPurpose, short_kid
from cardsvc.core.signing import sign_jws
from cardsvc.core.trustlist import TRUST_LIST_TYP, TrustAnchor, TrustList
from tests.core.conftest import NOW, Issuer, make_trust_list, new_signer

LEEWAY = timedelta(seconds=30)


def check_of(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(VerificationError) as info:
        fn(*args, **kw)
    return info.value.check


def test_round_trip_and_lookup(issuer: Issuer) -> None:
    token = issuer.trust_list.sign(issuer.root)
    loaded = TrustList.verify(token, root=issuer.root.verifying_key(), now=NOW, leeway=LEEWAY)
    assert loaded == issuer.trust_list
    ecard = issuer.signer(KeyPurpose.ECARD).kid
    assert loaded.find(ecard, KeyPurpose.ECARD, now=NOW).key.kid == ecard
    assert loaded.find_short(short_kid(ecard), KeyPurpose.ECARD, now=NOW).key.kid == ecard
    assert check_of(loaded.find, ecard, KeyPurpose.CARD_DOCUMENT, now=NOW) == "key-purpose"
    assert check_of(loaded.find, "nope", KeyPurpose.ECARD, now=NOW) == "key-unknown"
    late = NOW + timedelta(days=4000)
    assert check_of(loaded.find, ecard, KeyPurpose.ECARD, now=late) == "key-window"


def test_only_the_pinned_root_signs(issuer: Issuer) -> None:
    root = issuer.root.verifying_key()
    forged = issuer.trust_list.sign(new_signer())
    assert check_of(TrustList.verify, forged, root=root, now=NOW, leeway=LEEWAY) == "key-unknown"
    # An issuing key signing a trust list is still not the root.
    by_issuing = issuer.trust_list.sign(issuer.signer(KeyPurpose.STATUS_LIST))
    assert check_of(TrustList.verify, by_issuing, root=root, now=NOW, leeway=LEEWAY) == (
        "key-unknown"
    )
    token = issuer.trust_list.sign(issuer.root)
    h, p, s = token.split(".")
    tampered = f"{h}.{p[:-4]}AAAA.{s}"
    with pytest.raises(CoreError):
        TrustList.verify(tampered, root=root, now=NOW, leeway=LEEWAY)


def test_expired_trust_list(issuer: Issuer) -> None:
    token = issuer.trust_list.sign(issuer.root)
    later = NOW + timedelta(days=8)
    root = issuer.root.verifying_key()
    assert check_of(TrustList.verify, token, root=root, now=later, leeway=LEEWAY) == "expired"


def test_rollback_is_refused(issuer: Issuer) -> None:
    anchor = TrustAnchor(issuer.root.verifying_key())
    newer = make_trust_list(issuer.signers, sequence=5).sign(issuer.root)
    older = make_trust_list(issuer.signers, sequence=4).sign(issuer.root)
    assert anchor.accept(newer, now=NOW, leeway=LEEWAY).sequence == 5
    assert check_of(anchor.accept, older, now=NOW, leeway=LEEWAY) == "rollback"
    assert anchor.accept(newer, now=NOW, leeway=LEEWAY).sequence == 5  # reload is fine
    fewer = {KeyPurpose.ECARD: issuer.signer(KeyPurpose.ECARD)}
    same_seq = make_trust_list(fewer, sequence=5).sign(issuer.root)
    assert check_of(anchor.accept, same_seq, now=NOW, leeway=LEEWAY) == "rollback"
    # A restarted verifier that persisted the sequence refuses the old list too.
    restarted = TrustAnchor(issuer.root.verifying_key(), accepted_sequence=5)
    assert check_of(restarted.accept, older, now=NOW, leeway=LEEWAY) == "rollback"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.__setitem__("seq", -1),
        lambda c: c.__setitem__("seq", "1"),
        lambda c: c.__setitem__("keys", {}),
        lambda c: c["keys"][0].__setitem__("purpose", "root"),
        lambda c: c["keys"][0].__setitem__("purpose", "anything"),
        lambda c: c["keys"][0].__setitem__("kid", "other"),
        lambda c: c["keys"][0].__setitem__("exp", c["keys"][0]["nbf"]),
        lambda c: c["keys"][0].__setitem__("crv", "P-521"),
        lambda c: c["keys"][0].__setitem__("alg", "HS256"),
        lambda c: c["keys"].append(c["keys"][0]),
        lambda c: c.pop("iss"),
    ],
)
def test_malformed_trust_list_contents(issuer: Issuer, mutate: Any) -> None:
    claims = issuer.trust_list.to_claims()
    mutate(claims)
    token = sign_jws({"typ": TRUST_LIST_TYP}, claims, issuer.root)
    with pytest.raises(DecodeError):
        TrustList.verify(token, root=issuer.root.verifying_key(), now=NOW, leeway=LEEWAY)


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.hex())))
def test_random_input_gives_typed_errors(text: str) -> None:
    with pytest.raises(CoreError):
        TrustList.verify(text, root=new_signer().verifying_key(), now=NOW, leeway=LEEWAY)


def test_a_key_has_one_spelling(issuer: Issuer) -> None:
    from cardsvc.core.keys import VerifyingKey, b64url_decode, b64url_encode

    jwk = issuer.signer(KeyPurpose.ECARD).verifying_key().jwk()
    raw = b64url_decode(jwk["x"])
    assert b64url_encode(raw) == jwk["x"]
    # Flip the unused low bits of the last character: same bytes, another spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(jwk["x"][-1])
    twin = jwk["x"][:-1] + alphabet[last ^ 0b01]
    assert b64url_decode(twin) == raw
    with pytest.raises(DecodeError, match="canonical"):
        VerifyingKey.from_jwk({**jwk, "x": twin})
