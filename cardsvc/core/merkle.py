"""Merkle trees as in RFC 6962 / RFC 9162 section 2.1: hashes, proofs and their checks.

Leaf hash ``SHA-256(0x00 || data)``, node hash ``SHA-256(0x01 || left || right)``, the
root of ``n`` leaves splits at the largest power of two smaller than ``n``. The issuer's
audit log is such a tree; a partner holding a receipt (leaf index and leaf hash) and a
signed checkpoint (tree size and root hash) checks inclusion with::

    from cardsvc.core.merkle import verify_inclusion
    verify_inclusion(leaf_hash, index=receipt_index, size=cp.size, proof=hashes, root=cp.root)

Verification raises :class:`~cardsvc.core.errors.VerificationError` (``check``
``inclusion`` or ``consistency``) and returns the checked root; it never returns a bool.

Proof *generation* works over any store of complete-subtree hashes through a
:data:`NodeReader` ``(level, index) -> hash`` (the hash of leaves
``[index * 2**level, (index + 1) * 2**level)``), so a database holding those hashes
answers in O(log n) reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from cardsvc.core.errors import VerificationError

HASH_SIZE = 32
#: The root of the empty tree: SHA-256 of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: ``(level, index) -> hash`` of the complete subtree of ``2**level`` leaves at ``index``.
NodeReader = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_root(start: int, end: int, node: NodeReader) -> bytes:
    """The RFC 6962 hash of leaves ``[start, end)`` built from complete subtrees.

    ``start`` must be a multiple of the largest power of two not above ``end - start``
    (true of every subtree the RFC recursion visits); reads O(log n) nodes.
    """
    n = end - start
    if n <= 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return node(level, start >> level)
    k = _split(n)
    return node_hash(subtree_root(start, start + k, node), subtree_root(start + k, end, node))


def _check_range(index: int, size: int, what: str) -> None:
    if isinstance(index, bool) or isinstance(size, bool):
        raise ValueError(f"{what}: index and size must be ints")
    if not 0 <= index < size:
        raise ValueError(f"{what}: index {index} is not below tree size {size}")


def inclusion_proof(index: int, size: int, node: NodeReader) -> list[bytes]:
    """The audit path (RFC 9162 2.1.3.1) of leaf ``index`` in the tree of ``size`` leaves.

    Raises :class:`ValueError` unless ``0 <= index < size``.
    """
    _check_range(index, size, "inclusion proof")
    path: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            path.append(subtree_root(start + k, end, node))
            end = start + k
        else:
            path.append(subtree_root(start, start + k, node))
            start, m = start + k, m - k
    path.reverse()  # PATH lists the deepest sibling first
    return path


def consistency_proof(first: int, second: int, node: NodeReader) -> list[bytes]:
    """The consistency proof (RFC 9162 2.1.4.1) from tree size ``first`` to ``second``.

    Empty when ``first == second``. Raises :class:`ValueError` unless
    ``0 < first <= second``.
    """
    if isinstance(first, bool) or isinstance(second, bool) or not 0 < first <= second:
        raise ValueError(f"consistency proof: need 0 < first <= second, got {first}, {second}")
    proof: list[bytes] = []
    start, end, m, complete = 0, second, first, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(subtree_root(start + k, end, node))
            end = start + k
        else:
            proof.append(subtree_root(start, start + k, node))
            start, m, complete = start + k, m - k, False
    if not complete:
        proof.append(subtree_root(start, end, node))
    proof.reverse()
    return proof


class MemoryTree:
    """An in-memory tree over leaf hashes, storing every complete subtree (tests, tools)."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> int:
        """Add a leaf hash; return its index."""
        index = len(self._levels[0])
        self._levels[0].append(leaf)
        level, i = 0, index
        while i & 1:
            parent = node_hash(self._levels[level][i - 1], self._levels[level][i])
            level, i = level + 1, i >> 1
            if len(self._levels) == level:
                self._levels.append([])
            self._levels[level].append(parent)
        return index

    def node(self, level: int, index: int) -> bytes:
        return self._levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        return subtree_root(0, self.size if size is None else size, self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else size, self.node)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        return consistency_proof(first, self.size if second is None else second, self.node)


class Frontier:
    """Streaming root computation: O(log n) memory, one pass over leaf hashes."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (level, hash) of complete subtrees
        self.size = 0

    def append(self, leaf: bytes) -> None:
        level, h = 0, leaf
        while self._stack and self._stack[-1][0] == level:
            _, left = self._stack.pop()
            h = node_hash(left, h)
            level += 1
        self._stack.append((level, h))
        self.size += 1

    def seed(self, subtrees: Sequence[tuple[int, bytes]], size: int) -> None:
        """Start from the complete subtrees ``(level, hash)`` of the first ``size`` leaves,
        largest first (the binary decomposition of ``size``)."""
        if self.size or sum(1 << level for level, _ in subtrees) != size:
            raise ValueError("seed needs an empty frontier and subtrees that add up to size")
        self._stack = list(subtrees)
        self.size = size

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """The RFC 6962 root hash of the given leaf hashes."""
    frontier = Frontier()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


# --- verification -------------------------------------------------------------------------
# The "inner + border" decomposition (as in transparency-dev/merkle): a proof for index i
# in a tree of size n has `inner` hashes below the level where the paths to i and n-1 part,
# and `border` hashes on the right border above it.


def _check_hashes(proof: Sequence[bytes], check: str) -> None:
    for h in proof:
        if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
            raise VerificationError(check, f"every proof hash must be {HASH_SIZE} bytes")


def _decompose(index: int, size: int) -> tuple[int, int]:
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = node_hash(seed, h) if (index >> i) & 1 == 0 else node_hash(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = node_hash(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = node_hash(h, seed)
    return seed


def root_from_inclusion_proof(
    leaf: bytes, *, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root implied by ``proof`` for leaf hash ``leaf`` at ``index`` of ``size``."""
    if isinstance(index, bool) or isinstance(size, bool) or not 0 <= index < size:
        raise VerificationError("inclusion", f"index {index} is not below tree size {size}")
    _check_hashes([leaf, *proof], "inclusion")
    inner, border = _decompose(index, size)
    if len(proof) != inner + border:
        raise VerificationError(
            "inclusion", f"proof has {len(proof)} hashes, expected {inner + border}"
        )
    root = _chain_inner(bytes(leaf), proof[:inner], index)
    return _chain_border_right(root, proof[inner:])


def verify_inclusion(
    leaf: bytes, *, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bytes:
    """Check that leaf hash ``leaf`` is at ``index`` in the tree of ``size`` with ``root``.

    Returns ``root``; raises :class:`VerificationError` (check ``inclusion``) otherwise.
    """
    computed = root_from_inclusion_proof(leaf, index=index, size=size, proof=proof)
    if computed != root:
        raise VerificationError("inclusion", "proof does not lead to the expected root")
    return root


def verify_consistency(
    *, first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bytes:
    """Check that the tree ``(second, second_root)`` extends ``(first, first_root)``.

    Returns ``second_root``; raises :class:`VerificationError` (check ``consistency``).
    """
    check = "consistency"
    if isinstance(first, bool) or isinstance(second, bool) or not 0 <= first <= second:
        raise VerificationError(check, f"sizes {first} and {second} are not 0 <= first <= second")
    _check_hashes([first_root, second_root, *proof], check)
    if first == second:
        if proof:
            raise VerificationError(check, "proof between equal sizes must be empty")
        if first_root != second_root:
            raise VerificationError(check, "equal sizes with different roots")
        return second_root
    if first == 0:
        if proof:
            raise VerificationError(check, "proof from the empty tree must be empty")
        return second_root
    if not proof:
        raise VerificationError(check, "empty proof")
    inner, border = _decompose(first - 1, second)
    shift = (first & -first).bit_length() - 1  # trailing zeros of first
    inner -= shift
    if first == 1 << shift:  # first tree is a complete subtree: its root is the seed
        seed, rest = bytes(first_root), list(proof)
    else:
        seed, rest = bytes(proof[0]), list(proof[1:])
    if len(rest) != inner + border:
        raise VerificationError(check, "proof has the wrong number of hashes")
    mask = (first - 1) >> shift
    old = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    if old != first_root:
        raise VerificationError(check, "proof does not lead to the first root")
    new = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    if new != second_root:
        raise VerificationError(check, "proof does not lead to the second root")
    return second_root
