"""A slow, plain SM2 signer for test vectors: the nonce k is chosen, not drawn.

GM/T 0003.2 section 6.1 step by step, over the recommended curve of cardsvc.core.sm2, with
SM3 from the library. It exists so that vectors are byte-for-byte reproducible (k derived
from the key and the message, like RFC 6979 but simpler: these keys are public), so that
the tests can reproduce the published GM/T 0003.5 example from its k, and so that a
must-fail vector can be signed *without* Z. Never use it for a real key.
"""

from __future__ import annotations

from cardsvc.core import sm2

Point = tuple[int, int] | None


def _add(p1: Point, p2: Point) -> Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % sm2.P == 0:
        return None
    if p1 == p2:
        slope = (3 * x1 * x1 + sm2.A) * pow(2 * y1, -1, sm2.P)
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, sm2.P)
    x3 = (slope * slope - x1 - x2) % sm2.P
    return x3, (slope * (x1 - x3) - y1) % sm2.P


def multiply(k: int, point: Point = (sm2.GX, sm2.GY)) -> Point:
    """[k]point by double-and-add."""
    result: Point = None
    addend = point
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        k >>= 1
    return result


def public_point(d: int) -> tuple[int, int]:
    point = multiply(d)
    if point is None:
        raise ValueError("d is a multiple of n")
    return point


def sign_digest(d: int, e: int, k: int) -> bytes:
    """Raw r || s for the digest value e with the nonce k (steps A4 to A7)."""
    x1, _ = public_point(k)
    r = (e + x1) % sm2.N
    if r == 0 or r + k == sm2.N:
        raise ValueError("this k gives r = 0 or r + k = n; choose another")
    s = pow(1 + d, -1, sm2.N) * (k - r * d) % sm2.N
    if s == 0:
        raise ValueError("this k gives s = 0; choose another")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def digest(d: int, message: bytes, *, with_z: bool = True, signer_id: bytes = sm2.SIGNER_ID) -> int:
    """e = SM3(Z || M) as an integer (or SM3(M), the wrong thing, when ``with_z`` is false)."""
    x, y = public_point(d)
    prefix = sm2.z_value(x, y, signer_id) if with_z else b""
    return int.from_bytes(sm2.sm3(prefix + message), "big")


def deterministic_k(d: int, message: bytes) -> int:
    """A nonce from the key and the message: SM3(d || SM3(M) || counter) mod n, non-zero."""
    for counter in range(256):
        seed = d.to_bytes(32, "big") + sm2.sm3(message) + bytes((counter,))
        k = int.from_bytes(sm2.sm3(seed), "big") % sm2.N
        if k:
            return k
    raise AssertionError("unreachable")  # pragma: no cover


def sign(d: int, message: bytes, *, k: int | None = None, with_z: bool = True) -> bytes:
    """Raw r || s of SM2-with-SM3 over ``message`` (Z with the default signer ID)."""
    e = digest(d, message, with_z=with_z)
    return sign_digest(d, e, deterministic_k(d, message) if k is None else k)
