"""Entry-level deltas: the patch format, its decoder, and bundles that carry patches."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardsvc.core.bundle import BUNDLE_TYP, Bundle, StatusPatchError, encode_bundle
from cardsvc.core.errors import CoreError, DecodeError, VerificationError
from cardsvc.core.keys import KeyPurpose, b64url_decode, b64url_encode
from cardsvc.core.signing import sign_jws
from cardsvc.core.statuslist import Status, StatusList
from cardsvc.core.statuspatch import (
    Run,
    apply_patch,
    decode_entries,
    diff_lists,
    encode_entries,
    list_digest,
    make_patch,
    parse_patch,
)
from tests.core.conftest import NOW, Issuer
from tests.core.test_bundle import SHARDS, make_bundle, status_jwt, verify

URI = SHARDS[0]


def listed(size: int, bits: int, changes: dict[int, int]) -> StatusList:
    lst = StatusList.new(size, bits)
    for idx, status in changes.items():
        lst.set(idx, status)
    return lst


# -- the format ---------------------------------------------------------------------------


def test_entries_are_varint_runs_exactly() -> None:
    runs = [Run(5, 1, 1), Run(300, 3, 2)]
    # gap 5, status 1 (1 << 1); gap 294 (0xA6 0x02), status 2 with more (2 << 1 | 1),
    # count 3 (3 - 2).
    assert encode_entries(runs) == b"\x05\x02\xa6\x02\x05\x01"
    assert decode_entries(b"\x05\x02\xa6\x02\x05\x01") == runs
    assert encode_entries([]) == b"" and decode_entries(b"") == []


def test_encoder_refuses_unsorted_or_empty_runs() -> None:
    for runs in ([Run(5, 1, 1), Run(5, 1, 1)], [Run(0, 0, 1)], [Run(3, 1, -1)]):
        with pytest.raises(ValueError, match="runs"):
            encode_entries(runs)


def test_diff_merges_consecutive_entries_of_one_status_into_runs() -> None:
    old = listed(64, 2, {3: 1})
    new = listed(64, 2, {10: 1, 11: 1, 12: 1, 13: 2, 40: 3})
    assert diff_lists(old, new) == [
        Run(3, 1, 0),
        Run(10, 3, 1),
        Run(13, 1, 2),
        Run(40, 1, 3),
    ]
    with pytest.raises(ValueError, match="diff"):
        diff_lists(old, StatusList.new(64, 1))


@settings(max_examples=150, deadline=None)
@given(
    bits=st.sampled_from([1, 2, 4, 8]),
    size_bytes=st.integers(1, 9000),
    data=st.data(),
)
def test_diff_then_apply_rebuilds_the_new_list(
    bits: int, size_bytes: int, data: st.DataObject
) -> None:
    size = size_bytes * 8 // bits
    entry = st.tuples(st.integers(0, size - 1), st.integers(0, (1 << bits) - 1))
    old = listed(size, bits, dict(data.draw(st.lists(entry, max_size=40))))
    new = StatusList(bytearray(old.to_bytes()), bits, size)
    for idx, status in data.draw(st.lists(entry, max_size=40)):
        new.set(idx, status)
    patch = make_patch(old, new)
    runs, digest = parse_patch(patch)
    before = old.to_bytes()
    rebuilt = apply_patch(old, runs, digest, uri=URI)
    assert rebuilt.to_bytes() == new.to_bytes()
    assert old.to_bytes() == before  # the held list is never modified


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_random_entries_give_runs_or_a_decode_error(data: bytes) -> None:
    try:
        runs = decode_entries(data)
    except DecodeError:
        return
    assert len(runs) <= len(data) // 2
    assert all(r.count >= 1 and r.start >= 0 and r.status >= 0 for r in runs)
    assert all(a.start + a.count <= b.start for a, b in itertools.pairwise(runs))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([1, 2, 4, 8]))
def test_random_patches_on_a_list_give_a_list_or_a_typed_error(data: bytes, bits: int) -> None:
    held = listed(256 * 8 // bits, bits, {1: 1})
    patch = {"entries": b64url_encode(data), "sha256": b64url_encode(list_digest(held))}
    try:
        runs, digest = parse_patch(patch)
        patched = apply_patch(held, runs, digest, uri=URI)
    except StatusPatchError as exc:
        assert exc.check in {"patch-index", "patch-status", "patch-digest"}
        assert exc.uri == URI
        return
    except DecodeError:
        return
    assert patched.to_bytes() == held.to_bytes()  # the digest allows no other outcome


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=50),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=10,
    )
    | st.fixed_dictionaries({"entries": st.text(max_size=40), "sha256": st.text(max_size=50)})
)
def test_random_patch_objects_give_a_decode_error(obj: object) -> None:
    try:
        runs, digest = parse_patch(obj)
    except DecodeError:
        return
    assert len(digest) == 32 and isinstance(runs, list)


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"entries": "AA"}, "exactly"),
        ({"entries": "AA", "sha256": "AA", "more": 1}, "exactly"),
        ({"entries": 1, "sha256": "AA"}, "strings"),
        ({"entries": "AA", "sha256": "AA"}, "32 bytes"),
        ({"entries": "AA=", "sha256": b64url_encode(bytes(32))}, "base64url"),
        ({"entries": b64url_encode(b"\x80"), "sha256": b64url_encode(bytes(32))}, "inside"),
        ({"entries": b64url_encode(b"\x05"), "sha256": b64url_encode(bytes(32))}, "inside"),
        ({"entries": b64url_encode(b"\xff" * 9 + b"\x01"), "sha256": b64url_encode(bytes(32))},
         "longer"),
    ],
)  # fmt: skip
def test_malformed_patches_say_why(patch: object, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        parse_patch(patch)


def test_each_refusal_names_its_check_and_carries_its_data() -> None:
    held = listed(64, 1, {3: 1})
    good = list_digest(listed(64, 1, {3: 1, 9: 1}))
    with pytest.raises(StatusPatchError) as info:
        apply_patch(held, [Run(60, 5, 1)], good, uri=URI)
    assert (info.value.check, info.value.index, info.value.uri) == ("patch-index", 64, URI)
    with pytest.raises(StatusPatchError) as info:
        apply_patch(held, [Run(9, 1, 2)], good, uri=URI)  # SUSPENDED in a 1-bit list
    assert (info.value.check, info.value.index, info.value.status) == ("patch-status", 9, 2)
    with pytest.raises(StatusPatchError) as info:
        apply_patch(held, [Run(8, 1, 1)], good, uri=URI)
    assert info.value.check == "patch-digest"
    assert isinstance(info.value, VerificationError) and isinstance(info.value, CoreError)
    assert apply_patch(held, [Run(9, 1, 1)], good, uri=URI).get(9) == Status.INVALID
    assert held.get(9) == Status.VALID


def test_the_digest_is_sha256_of_the_uncompressed_bytes() -> None:
    lst = listed(16, 2, {1: 1})
    assert list_digest(lst) == hashlib.sha256(bytes([0x04, 0, 0, 0])).digest()


# -- bundles that carry patches ------------------------------------------------------------


def lists_of(bundle: Bundle) -> dict[str, bytes]:
    return {uri: t.status_list.to_bytes() for uri, t in bundle.status_lists.items()}


def held_bundle(issuer: Issuer) -> Bundle:
    return verify(issuer, make_bundle(issuer, version=5))


def patched_delta(issuer: Issuer, patches: dict[str, dict[str, str]], **kw: object) -> str:
    return encode_bundle(
        issuer="https://issuer.test",
        version=6,
        issued_at=NOW + timedelta(seconds=10),
        expires_at=NOW + timedelta(days=1, seconds=10),
        base=5,
        trust_list=issuer.trust_list.sign(issuer.root),
        status_lists=kw.get("shards", {}),  # type: ignore[arg-type]
        status_patches=patches,
        signer=issuer.signer(KeyPurpose.STATUS_LIST),
    )


def test_an_entry_delta_rebuilds_the_issuers_list(issuer: Issuer) -> None:
    held = held_bundle(issuer)
    old = held.status_lists[URI].status_list
    new = listed(len(old), old.bits, {3: Status.INVALID, 700: Status.SUSPENDED})
    delta = patched_delta(issuer, {URI: make_patch(old, new)})
    before = lists_of(held)
    merged = verify(issuer, delta, previous=held)
    assert merged.version == 6 and merged.base == 5 and merged.patched == frozenset({URI})
    token = merged.status_lists[URI]
    assert token.status_list.to_bytes() == new.to_bytes()
    # Vouched for by the bundle: its signed time, its exp, its key.
    assert (token.iat, token.exp) == (merged.issued_at, merged.expires_at)
    assert token.kid == issuer.signer(KeyPurpose.STATUS_LIST).kid
    assert token.sub == URI and token.ttl == held.status_lists[URI].ttl
    assert merged.status_lists[SHARDS[1]] is held.status_lists[SHARDS[1]]
    assert lists_of(held) == before  # the held bundle is untouched
    view = merged.to_json()
    assert view["patched"] == [URI]
    assert view["status_lists"][URI]["sha256"] == make_patch(old, new)["sha256"]


def test_a_delta_may_mix_whole_and_patched_shards(issuer: Issuer) -> None:
    held = held_bundle(issuer)
    old = held.status_lists[URI].status_list
    new = listed(len(old), old.bits, {5: Status.INVALID})
    whole = {SHARDS[1]: status_jwt(issuer, SHARDS[1], revoked=(9,))}
    merged = verify(issuer, patched_delta(issuer, {URI: make_patch(old, new)}, shards=whole),
                    previous=held)  # fmt: skip
    assert merged.status_lists[URI].status_list.get(5) == Status.INVALID
    assert merged.status_lists[SHARDS[1]].status_list.get(9) == Status.INVALID
    assert merged.patched == frozenset({URI})


def test_patches_chain_on_patched_lists(issuer: Issuer) -> None:
    held = held_bundle(issuer)
    old = held.status_lists[URI].status_list
    mid = listed(len(old), old.bits, {5: Status.INVALID})
    first = verify(issuer, patched_delta(issuer, {URI: make_patch(old, mid)}), previous=held)
    last = listed(len(old), old.bits, {5: Status.INVALID, 6: Status.INVALID})
    second = encode_bundle(
        issuer="https://issuer.test", version=7, issued_at=NOW + timedelta(seconds=20),
        expires_at=NOW + timedelta(days=1), base=6,
        trust_list=issuer.trust_list.sign(issuer.root), status_lists={},
        status_patches={URI: make_patch(mid, last)},
        signer=issuer.signer(KeyPurpose.STATUS_LIST),
    )  # fmt: skip
    assert verify(issuer, second, previous=first).status_lists[URI].status_list.get(6) == 1


def refusal(issuer: Issuer, token: str, previous: Bundle | None) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify(issuer, token, previous)
    return info.value


def test_a_patch_for_a_shard_not_held_is_refused(issuer: Issuer) -> None:
    held = verify(issuer, make_bundle(issuer, version=5, shards={SHARDS[1]: status_jwt(
        issuer, SHARDS[1])}))  # fmt: skip
    lst = StatusList.new(1024)
    error = refusal(issuer, patched_delta(issuer, {URI: make_patch(lst, lst)}), held)
    assert isinstance(error, StatusPatchError)
    assert (error.check, error.uri) == ("patch-base", URI)


def test_a_patch_on_another_version_is_refused(issuer: Issuer) -> None:
    held = verify(issuer, make_bundle(issuer, version=4))
    lst = StatusList.new(1024)
    delta = patched_delta(issuer, {URI: make_patch(lst, lst)})
    assert refusal(issuer, delta, held).check == "bundle-base"
    assert refusal(issuer, delta, None).check == "bundle-base"


@pytest.mark.parametrize(
    ("entries", "check"),
    [
        (encode_entries([Run(1020, 5, 1)]), "patch-index"),
        (encode_entries([Run(3, 1, 4)]), "patch-status"),  # 4 does not fit in 2 bits
        (encode_entries([Run(3, 1, 1)]), "patch-digest"),  # not the list the digest names
    ],
)
def test_a_bad_patch_is_refused_with_its_reason(issuer: Issuer, entries: bytes, check: str) -> None:
    held = held_bundle(issuer)
    old = held.status_lists[URI].status_list
    digest = list_digest(listed(len(old), old.bits, {4: 1}))
    patch = {"entries": b64url_encode(entries), "sha256": b64url_encode(digest)}
    before = lists_of(held)
    error = refusal(issuer, patched_delta(issuer, {URI: patch}), held)
    assert isinstance(error, StatusPatchError) and error.check == check
    assert lists_of(held) == before


def test_patches_only_in_a_delta_and_never_beside_the_whole_shard(issuer: Issuer) -> None:
    signer = issuer.signer(KeyPurpose.STATUS_LIST)
    lst = StatusList.new(1024)
    patch = make_patch(lst, lst)
    claims = {
        "iss": "https://issuer.test", "ver": 6, "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 60, "base": None,
        "trust_list": issuer.trust_list.sign(issuer.root), "status_lists": {},
        "status_patches": {URI: patch},
    }  # fmt: skip
    held = held_bundle(issuer)
    assert refusal(issuer, sign_jws({"typ": BUNDLE_TYP}, claims, signer), held).check == "claims"
    both = {**claims, "base": 5, "status_lists": {URI: status_jwt(issuer, URI)}}
    assert refusal(issuer, sign_jws({"typ": BUNDLE_TYP}, both, signer), held).check == "claims"
    for bad in ([], {URI: "x"}, {"": patch}):
        token = sign_jws({"typ": BUNDLE_TYP}, {**claims, "base": 5, "status_patches": bad}, signer)
        with pytest.raises((VerificationError, DecodeError)):
            verify(issuer, token, held)
    with pytest.raises(ValueError, match="base"):
        encode_bundle(
            issuer="https://issuer.test", version=6, issued_at=NOW,
            expires_at=NOW + timedelta(days=1), base=None,
            trust_list=claims["trust_list"], status_lists={},  # type: ignore[arg-type]
            status_patches={URI: patch}, signer=signer,
        )  # fmt: skip
    with pytest.raises(ValueError, match="both"):
        patched_delta(issuer, {URI: patch}, shards={URI: status_jwt(issuer, URI)})


def test_without_patches_the_claim_is_left_out(issuer: Issuer) -> None:
    # Bundles without patches stay what older verifiers read: no status_patches claim.
    token = encode_bundle(
        issuer="https://issuer.test", version=6, issued_at=NOW,
        expires_at=NOW + timedelta(days=1), base=5,
        trust_list=issuer.trust_list.sign(issuer.root), status_lists={}, status_patches={},
        signer=issuer.signer(KeyPurpose.STATUS_LIST),
    )  # fmt: skip
    assert "status_patches" not in json.loads(b64url_decode(token.split(".")[1]))
