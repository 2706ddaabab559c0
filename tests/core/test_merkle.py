"""RFC 6962 / 9162 Merkle trees: published vectors, and proofs checked by a second,
independent implementation of the RFC 9162 verification algorithms written below."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsvc.core.errors import VerificationError
from cardsvc.core.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# --- an independent reference, straight from the RFC text --------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 2.1.1 over leaf *inputs*, recursively."""
    n = len(leaves)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return _h(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:]))


def ref_verify_inclusion(
    leaf_index: int, tree_size: int, leaf: bytes, path: list[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn = leaf_index, tree_size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _h(b"\x01" + p + r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = _h(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def ref_verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: list[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2, step by step (for 0 < first < second)."""
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _h(b"\x01" + c + fr)
            sr = _h(b"\x01" + c + sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _h(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# --- vectors --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vectors(standard_vectors: Path) -> dict[str, list[str]]:
    path = standard_vectors / "merkle-rfc6962.json"
    if not path.is_file():
        pytest.fail(f"Merkle test vectors missing: {path}")
    data: dict[str, list[str]] = json.loads(path.read_text())
    return data


def test_published_roots_for_sizes_0_to_8(vectors: dict[str, list[str]]) -> None:
    inputs = [bytes.fromhex(x) for x in vectors["leaf_inputs_hex"]]
    roots = [bytes.fromhex(x) for x in vectors["root_hash_by_size_hex"]]
    assert len(roots) == 9
    assert roots[0] == EMPTY_ROOT
    for n, expected in enumerate(roots):
        hashes = [leaf_hash(x) for x in inputs[:n]]
        assert root_of(hashes) == expected, n
        assert MemoryTree(hashes).root() == expected, n
        assert ref_mth(inputs[:n]) == expected, n


def test_vector_proofs_check_with_both_implementations(vectors: dict[str, list[str]]) -> None:
    inputs = [bytes.fromhex(x) for x in vectors["leaf_inputs_hex"]]
    roots = [bytes.fromhex(x) for x in vectors["root_hash_by_size_hex"]]
    tree = MemoryTree(leaf_hash(x) for x in inputs)
    for size in range(1, 9):
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            leaf = leaf_hash(inputs[index])
            assert ref_verify_inclusion(index, size, leaf, proof, roots[size])
            verify_inclusion(leaf, index=index, size=size, proof=proof, root=roots[size])
        for first in range(1, size):
            proof = tree.consistency_proof(first, size)
            assert ref_verify_consistency(first, size, roots[first], roots[size], proof)
            verify_consistency(
                first=first,
                second=size,
                first_root=roots[first],
                second_root=roots[size],
                proof=proof,
            )


def test_known_rfc_shapes() -> None:
    # The RFC 9162 2.1.5 example tree of 7 leaves: d0's path is [b, h, l], d6's is [l, i],
    # consistency 3 -> 7 has 4 hashes [c, d, g, l], 4 -> 7 has one [l], 6 -> 7 has [i, j, k].
    tree = MemoryTree(leaf_hash(bytes([i])) for i in range(7))
    assert len(tree.inclusion_proof(0, 7)) == 3
    assert len(tree.inclusion_proof(6, 7)) == 2
    assert len(tree.consistency_proof(3, 7)) == 4
    assert len(tree.consistency_proof(4, 7)) == 1
    assert len(tree.consistency_proof(6, 7)) == 3
    assert tree.consistency_proof(7, 7) == []


def _tree(n: int) -> MemoryTree:
    return MemoryTree(leaf_hash(i.to_bytes(4, "big")) for i in range(n))


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_proofs_agree_with_the_rfc_algorithm(case: tuple[int, int]) -> None:
    size, index = case
    tree = _tree(size)
    root = tree.root()
    assert root == ref_mth([i.to_bytes(4, "big") for i in range(size)])
    proof = tree.inclusion_proof(index)
    leaf = leaf_hash(index.to_bytes(4, "big"))
    assert ref_verify_inclusion(index, size, leaf, proof, root)
    assert verify_inclusion(leaf, index=index, size=size, proof=proof, root=root) == root
    # Wrong leaf, wrong index, truncated or extended proof: both implementations refuse.
    other = leaf_hash(b"other")
    assert not ref_verify_inclusion(index, size, other, proof, root)
    with pytest.raises(VerificationError) as info:
        verify_inclusion(other, index=index, size=size, proof=proof, root=root)
    assert info.value.check == "inclusion"
    if size > 1:
        wrong = (index + 1) % size
        assert not ref_verify_inclusion(wrong, size, leaf, proof, root)
        with pytest.raises(VerificationError):
            verify_inclusion(leaf, index=wrong, size=size, proof=proof, root=root)
        with pytest.raises(VerificationError):
            verify_inclusion(leaf, index=index, size=size, proof=proof[:-1], root=root)
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, index=index, size=size, proof=[*proof, root], root=root)
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, index=size, size=size, proof=proof, root=root)


@given(st.integers(2, 300).flatmap(lambda n: st.tuples(st.integers(1, n - 1), st.just(n))))
def test_consistency_proofs_agree_with_the_rfc_algorithm(case: tuple[int, int]) -> None:
    first, second = case
    tree = _tree(second)
    r1, r2 = tree.root(first), tree.root()
    proof = tree.consistency_proof(first)
    assert ref_verify_consistency(first, second, r1, r2, proof)
    verify_consistency(first=first, second=second, first_root=r1, second_root=r2, proof=proof)
    bad = leaf_hash(b"x")
    assert not ref_verify_consistency(first, second, bad, r2, proof)
    for kwargs in (
        {"first_root": bad, "second_root": r2, "proof": proof},
        {"first_root": r1, "second_root": bad, "proof": proof},
        {"first_root": r1, "second_root": r2, "proof": proof[:-1]},
        {"first_root": r1, "second_root": r2, "proof": [*proof, bad]},
    ):
        with pytest.raises(VerificationError) as info:
            verify_consistency(first=first, second=second, **kwargs)  # type: ignore[arg-type]
        assert info.value.check == "consistency"


@given(st.lists(st.binary(max_size=40), max_size=70))
def test_frontier_memory_tree_and_rfc_recursion_agree(inputs: list[bytes]) -> None:
    hashes = [leaf_hash(x) for x in inputs]
    frontier = Frontier()
    for h in hashes:
        frontier.append(h)
    assert frontier.root() == MemoryTree(hashes).root() == ref_mth(inputs)


def test_generation_refuses_out_of_range() -> None:
    tree = _tree(5)
    for index, size in ((5, 5), (-1, 5), (0, 0)):
        with pytest.raises(ValueError, match="inclusion proof"):
            inclusion_proof(index, size, tree.node)
    for first, second in ((0, 5), (6, 5), (-1, 5)):
        with pytest.raises(ValueError, match="consistency proof"):
            consistency_proof(first, second, tree.node)


def test_verification_edge_cases() -> None:
    r = node_hash(leaf_hash(b"a"), leaf_hash(b"b"))
    verify_consistency(first=3, second=3, first_root=r, second_root=r, proof=[])
    verify_consistency(first=0, second=3, first_root=EMPTY_ROOT, second_root=r, proof=[])
    for kwargs in (
        {"first": 3, "second": 3, "first_root": r, "second_root": EMPTY_ROOT, "proof": []},
        {"first": 3, "second": 3, "first_root": r, "second_root": r, "proof": [r]},
        {"first": 4, "second": 3, "first_root": r, "second_root": r, "proof": []},
        {"first": 1, "second": 3, "first_root": r, "second_root": r, "proof": []},
        {"first": 1, "second": 3, "first_root": r, "second_root": r, "proof": [b"short"]},
    ):
        with pytest.raises(VerificationError):
            verify_consistency(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(VerificationError):
        verify_inclusion(b"short", index=0, size=1, proof=[], root=r)
    with pytest.raises(VerificationError):
        verify_inclusion(leaf_hash(b"a"), index=True, size=2, proof=[r], root=r)
