"""The verifier bundle: round trip, deltas, and every rejection with its reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardsvc.core.bundle import BUNDLE_TYP, Bundle, encode_bundle, verify_bundle
from cardsvc.core.errors import CoreError, DecodeError, InputTooLargeError, VerificationError
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.signing import Signer, sign_jws
from cardsvc.core.statuslist import Status, StatusList, encode_status_list_jwt
from tests.core.conftest import NOW, Issuer, make_trust_list, new_signer

LEEWAY = timedelta(seconds=30)
SHARDS = ("https://issuer.test/v1/status-lists/0", "https://issuer.test/v1/status-lists/1")


def status_jwt(issuer: Issuer, uri: str, revoked: tuple[int, ...] = ()) -> str:
    lst = StatusList.new(1024)
    for i in revoked:
        lst.set(i, Status.INVALID)
    return encode_status_list_jwt(
        lst,
        sub=uri,
        iat=NOW,
        exp=NOW + timedelta(days=1),
        ttl=3600,
        signer=issuer.signer(KeyPurpose.STATUS_LIST),
    )


def make_bundle(
    issuer: Issuer,
    *,
    version: int = 5,
    base: int | None = None,
    shards: dict[str, str] | None = None,
    signer: Signer | None = None,
    iat_offset: timedelta = timedelta(0),
    trust_list: str | None = None,
) -> str:
    return encode_bundle(
        issuer="https://issuer.test",
        version=version,
        issued_at=NOW + iat_offset,
        expires_at=NOW + iat_offset + timedelta(days=1),
        base=base,
        trust_list=trust_list or issuer.trust_list.sign(issuer.root),
        status_lists=shards if shards is not None else {u: status_jwt(issuer, u) for u in SHARDS},
        signer=signer or issuer.signer(KeyPurpose.STATUS_LIST),
    )


def verify(issuer: Issuer, token: str, previous: Bundle | None = None) -> Bundle:
    return verify_bundle(
        token, root=issuer.root.verifying_key(), now=NOW, leeway=LEEWAY, previous=previous
    )


def check_of(issuer: Issuer, token: str, previous: Bundle | None = None) -> str:
    with pytest.raises(VerificationError) as info:
        verify(issuer, token, previous)
    return info.value.check


def test_full_bundle_round_trip(issuer: Issuer) -> None:
    bundle = verify(issuer, make_bundle(issuer))
    assert bundle.version == 5
    assert bundle.base is None
    assert bundle.issuer == "https://issuer.test"
    assert bundle.issued_at == NOW
    assert bundle.trust_list == issuer.trust_list
    assert set(bundle.status_lists) == set(SHARDS)
    assert bundle.status_lists[SHARDS[0]].status_list.get(3) == Status.VALID


def test_delta_applies_onto_previous(issuer: Issuer) -> None:
    full = verify(issuer, make_bundle(issuer, version=5))
    changed = {SHARDS[1]: status_jwt(issuer, SHARDS[1], revoked=(3,))}
    delta = make_bundle(
        issuer, version=6, base=5, shards=changed, iat_offset=timedelta(seconds=10)
    )
    merged = verify(issuer, delta, previous=full)
    assert merged.version == 6
    assert merged.base == 5
    assert merged.status_lists[SHARDS[0]] is full.status_lists[SHARDS[0]]
    assert merged.status_lists[SHARDS[1]].status_list.get(3) == Status.INVALID


def test_delta_on_another_version_asks_for_full(issuer: Issuer) -> None:
    full = verify(issuer, make_bundle(issuer, version=5))
    delta = make_bundle(issuer, version=8, base=7, shards={})
    assert check_of(issuer, delta, previous=full) == "bundle-base"
    assert check_of(issuer, delta) == "bundle-base"


def test_rolled_back_bundle_rejected(issuer: Issuer) -> None:
    held = verify(issuer, make_bundle(issuer, version=5))
    assert check_of(issuer, make_bundle(issuer, version=4), previous=held) == "bundle-rollback"
    reused = make_bundle(issuer, version=5, iat_offset=timedelta(seconds=1))
    assert check_of(issuer, reused, previous=held) == "bundle-rollback"
    older_time = make_bundle(issuer, version=6, iat_offset=-timedelta(seconds=1))
    assert check_of(issuer, older_time, previous=held) == "bundle-rollback"
    # the same bundle again is fine (a re-download)
    assert verify(issuer, make_bundle(issuer, version=5), previous=held).version == 5


def test_older_trust_list_is_rollback(issuer: Issuer) -> None:
    newer = make_trust_list(issuer.signers, sequence=2).sign(issuer.root)
    held = verify(issuer, make_bundle(issuer, version=5, trust_list=newer))
    assert check_of(issuer, make_bundle(issuer, version=6), previous=held) == "bundle-rollback"


def test_foreign_key_bundle_rejected(issuer: Issuer) -> None:
    assert check_of(issuer, make_bundle(issuer, signer=new_signer())) == "key-unknown"


def test_bundle_signed_with_wrong_purpose_key_rejected(issuer: Issuer) -> None:
    token = make_bundle(issuer, signer=issuer.signer(KeyPurpose.ECARD))
    assert check_of(issuer, token) == "key-purpose"


def test_trust_list_from_foreign_root_rejected(issuer: Issuer) -> None:
    foreign = issuer.trust_list.sign(new_signer())
    assert check_of(issuer, make_bundle(issuer, trust_list=foreign)) == "key-unknown"


def test_foreign_status_list_rejected(issuer: Issuer) -> None:
    lst = StatusList.new(8)
    rogue = encode_status_list_jwt(
        lst, sub=SHARDS[0], iat=NOW, exp=NOW + timedelta(days=1), ttl=60, signer=new_signer()
    )
    assert check_of(issuer, make_bundle(issuer, shards={SHARDS[0]: rogue})) == "key-unknown"


def test_status_list_under_other_uri_rejected(issuer: Issuer) -> None:
    swapped = {SHARDS[0]: status_jwt(issuer, SHARDS[1])}
    assert check_of(issuer, make_bundle(issuer, shards=swapped)) == "sub"


def test_tampered_bundle_rejected(issuer: Issuer) -> None:
    token = make_bundle(issuer)
    header, payload, sig = token.split(".")
    other = make_bundle(issuer, version=9).split(".")[1]
    assert check_of(issuer, f"{header}.{other}.{sig}") == "signature"
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert check_of(issuer, f"{header}.{payload}.{flipped}") == "signature"


def test_truncated_bundle_rejected(issuer: Issuer) -> None:
    token = make_bundle(issuer)
    for cut in (len(token) - 5, len(token) // 2, 10):
        with pytest.raises((VerificationError, DecodeError)):
            verify(issuer, token[:cut])


def test_expired_bundle_rejected(issuer: Issuer) -> None:
    token = make_bundle(issuer)
    with pytest.raises(VerificationError) as info:
        verify_bundle(
            token, root=issuer.root.verifying_key(), now=NOW + timedelta(days=2), leeway=LEEWAY
        )
    # the embedded status lists expire after one day too; the first expired check wins
    assert info.value.check == "expired"


def test_wrong_typ_and_bad_claims(issuer: Issuer) -> None:
    signer = issuer.signer(KeyPurpose.STATUS_LIST)
    trust = issuer.trust_list.sign(issuer.root)
    claims = {
        "iss": "https://issuer.test",
        "ver": 1,
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 60,
        "base": None,
        "trust_list": trust,
        "status_lists": {},
    }
    assert check_of(issuer, sign_jws({"typ": "JWT"}, claims, signer)) == "typ"
    for name, bad in (("ver", -1), ("ver", "1"), ("base", 1), ("status_lists", [])):
        token = sign_jws({"typ": BUNDLE_TYP}, {**claims, name: bad}, signer)
        assert check_of(issuer, token) == "claims", name
    token = sign_jws({"typ": BUNDLE_TYP}, {**claims, "iss": "https://other.test"}, signer)
    assert check_of(issuer, token) == "bundle-issuer"


def test_oversized_bundle_refused_before_decoding(issuer: Issuer) -> None:
    with pytest.raises(InputTooLargeError):
        verify_bundle(
            "a" * 101,
            root=issuer.root.verifying_key(),
            now=NOW,
            leeway=LEEWAY,
            max_size=100,
        )


def test_encode_refuses_inconsistent_arguments(issuer: Issuer) -> None:
    with pytest.raises(ValueError, match="base"):
        make_bundle(issuer, version=3, base=3)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.hex()))
def test_random_text_gives_typed_error(issuer: Issuer, text: str) -> None:
    with pytest.raises(CoreError):
        verify(issuer, text)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_mutation_gives_typed_error(issuer: Issuer, data: st.DataObject) -> None:
    token = _cached_token(issuer)
    pos = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from("AZaz09-_.=~"))
    mutated = token[:pos] + char + token[pos + 1 :]
    try:
        bundle = verify(issuer, mutated)
    except CoreError:
        return
    assert bundle.version == 5  # a mutation in unused base64url bits is harmless


_TOKENS: dict[int, str] = {}


def _cached_token(issuer: Issuer) -> str:
    return _TOKENS.setdefault(id(issuer), make_bundle(issuer))
