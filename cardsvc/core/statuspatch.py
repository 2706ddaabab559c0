"""Entry-level patches of a status list: what a delta bundle carries for a shard with few changes.

A shard-level delta carries a changed shard's whole Status List Token; with random
changes every shard changes, so such a delta is as large as the full bundle. A *patch*
carries only the changed entries, and the SHA-256 of the list they must produce::

    {"entries": "<base64url>", "sha256": "<base64url of 32 bytes>"}

``entries`` is a sequence of *runs* (consecutive entries set to one status), in
increasing index order, each encoded as unsigned LEB128 varints::

    varint(gap)  varint(status << 1 | more)  [varint(count - 2) if more]

``gap`` is the run's first index minus the end (last index + 1) of the previous run, or
minus 0 for the first run; ``more`` is 0 for a run of one entry, else ``count - 2``
follows. A random change costs three or four bytes (a gap in a 2**20-entry shard needs
at most 3 varint bytes, the status one); a revoked batch of cards costs one run.

``sha256`` is the digest of the *uncompressed* list bytes (the ``lst`` after zlib
decompression) once the patch is applied. It proves the verifier rebuilt exactly the
list the issuer holds: a verifier whose base differs in any entry (damaged state, a bug)
fails closed with ``patch-digest`` instead of answering from a wrong list.

:func:`decode_entries` parses the bytes (malformed input raises :class:`DecodeError`,
nothing else); :func:`apply_patch` applies them to a copy of a held list and raises
:class:`StatusPatchError` for an index out of range (``patch-index``), a status that does
not fit the list's bits (``patch-status``) or a digest mismatch (``patch-digest``).
:func:`diff_lists` and :func:`make_patch` are the issuer's side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cardsvc.core.errors import DecodeError, VerificationError, shown
from cardsvc.core.keys import b64url_encode, canonical_b64url_decode
from cardsvc.core.statuslist import StatusList

__all__ = [
    "PATCH_MEMBERS",
    "Run",
    "StatusPatchError",
    "apply_patch",
    "decode_entries",
    "diff_lists",
    "encode_entries",
    "list_digest",
    "make_patch",
    "parse_patch",
]

_FORMAT: Final = "status patch"
#: The members of a patch object, exactly.
PATCH_MEMBERS: Final = frozenset({"entries", "sha256"})
# A varint carries at most 63 bits: 9 groups of 7. Longer ones are damage, refused before
# Python builds an arbitrarily large int from them.
_MAX_VARINT_BYTES: Final = 9
_DIFF_CHUNK: Final = 4096  # bytes compared at a time, then in pieces, then one by one
_DIFF_PIECE: Final = 64


class StatusPatchError(VerificationError):
    """A patch does not apply to the held list; ``check`` says why.

    ``patch-base``: the held bundle has no such shard; ``patch-index``: a run reaches past
    the list (``index`` is the first index out of range); ``patch-status``: ``status``
    does not fit the list's bits; ``patch-digest``: the patched list is not the issuer's.
    A verifier keeps its previous bundle and may fetch a full one.
    """

    def __init__(
        self,
        check: str,
        detail: str,
        *,
        uri: str,
        index: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(check, f"{uri}: {detail}")
        self.uri = uri
        self.index = index
        self.status = status


@dataclass(frozen=True, slots=True)
class Run:
    """``count`` consecutive entries from ``start`` set to ``status``."""

    start: int
    count: int
    status: int


def list_digest(lst: StatusList) -> bytes:
    """SHA-256 of the list's uncompressed bytes (what a patch's ``sha256`` names)."""
    return hashlib.sha256(lst.to_bytes()).digest()


# -- encoding -----------------------------------------------------------------------------


def _varint(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def encode_entries(runs: list[Run]) -> bytes:
    """The ``entries`` bytes of ``runs`` (sorted, not overlapping, ``count`` >= 1)."""
    out = bytearray()
    end = 0
    for run in runs:
        if run.start < end or run.count < 1 or run.status < 0:
            raise ValueError(f"runs must be sorted, disjoint and non-empty: {run}")
        _varint(run.start - end, out)
        if run.count == 1:
            _varint(run.status << 1, out)
        else:
            _varint(run.status << 1 | 1, out)
            _varint(run.count - 2, out)
        end = run.start + run.count
    return bytes(out)


def diff_lists(old: StatusList, new: StatusList) -> list[Run]:
    """The runs that turn ``old`` into ``new`` (same bits and size, else ValueError)."""
    if old.bits != new.bits or len(old) != len(new):
        raise ValueError(f"cannot diff {old!r} against {new!r}")
    a, b = old.to_bytes(), new.to_bytes()
    per_byte = 8 // new.bits
    changed: list[tuple[int, int]] = []
    # Slices compare at C speed: 4 KiB chunks, then 64-byte pieces of a chunk that
    # differs, and only then single bytes, so a change costs about 130 steps in Python.
    for chunk in range(0, len(b), _DIFF_CHUNK):
        stop = min(chunk + _DIFF_CHUNK, len(b))
        if a[chunk:stop] == b[chunk:stop]:
            continue
        for piece in range(chunk, stop, _DIFF_PIECE):
            end = min(piece + _DIFF_PIECE, stop)
            if a[piece:end] == b[piece:end]:
                continue
            for pos in range(piece, end):
                if a[pos] != b[pos]:
                    first = pos * per_byte
                    for idx in range(first, min(first + per_byte, len(new))):
                        status = new.get(idx)
                        if old.get(idx) != status:
                            changed.append((idx, status))
    runs: list[Run] = []
    for idx, status in changed:
        last = runs[-1] if runs else None
        if last is not None and last.status == status and last.start + last.count == idx:
            runs[-1] = Run(last.start, last.count + 1, status)
        else:
            runs.append(Run(idx, 1, status))
    return runs


def make_patch(old: StatusList, new: StatusList) -> dict[str, str]:
    """The patch object that turns ``old`` into ``new``, with ``new``'s digest."""
    return {
        "entries": b64url_encode(encode_entries(diff_lists(old, new))),
        "sha256": b64url_encode(list_digest(new)),
    }


# -- decoding -----------------------------------------------------------------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise DecodeError(_FORMAT, f"entries end inside a varint at byte {pos}")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise DecodeError(_FORMAT, f"varint at byte {pos} is longer than {_MAX_VARINT_BYTES} bytes")


def decode_entries(data: bytes) -> list[Run]:
    """Parse ``entries`` bytes into runs; raises :class:`DecodeError` if malformed.

    The runs are in increasing index order and disjoint by construction; whether they fit
    a list is :func:`apply_patch`'s question. At most one run per two input bytes.
    """
    if not isinstance(data, bytes | bytearray):
        raise DecodeError(_FORMAT, f"entries must be bytes, not {type(data).__name__}")
    runs: list[Run] = []
    pos = end = 0
    while pos < len(data):
        gap, pos = _read_varint(data, pos)
        head, pos = _read_varint(data, pos)
        count = 1
        if head & 1:
            extra, pos = _read_varint(data, pos)
            count = extra + 2
        start = end + gap
        runs.append(Run(start, count, head >> 1))
        end = start + count
    return runs


def parse_patch(obj: object) -> tuple[list[Run], bytes]:
    """A patch object (already JSON-decoded) as ``(runs, sha256)``; :class:`DecodeError`."""
    if not isinstance(obj, Mapping) or set(obj) != PATCH_MEMBERS:
        raise DecodeError(_FORMAT, "a patch must be an object of exactly entries and sha256")
    entries: Any = obj["entries"]
    digest: Any = obj["sha256"]
    if not isinstance(entries, str) or not isinstance(digest, str):
        raise DecodeError(_FORMAT, "entries and sha256 must be base64url strings")
    raw_digest = canonical_b64url_decode(digest, format_name=_FORMAT, what="sha256")
    if len(raw_digest) != 32:
        raise DecodeError(_FORMAT, f"sha256 must be 32 bytes, not {len(raw_digest)}")
    raw_entries = canonical_b64url_decode(entries, format_name=_FORMAT, what="entries")
    return decode_entries(raw_entries), raw_digest


def apply_patch(held: StatusList, runs: list[Run], digest: bytes, *, uri: str) -> StatusList:
    """A copy of ``held`` with ``runs`` applied, checked against ``digest``.

    ``held`` is never modified, so a refused patch leaves the verifier's list as it was.
    Raises :class:`StatusPatchError` (``patch-index``, ``patch-status``, ``patch-digest``).
    """
    size, top = len(held), (1 << held.bits) - 1
    # Every run is checked before any is applied: the copy is made only for a patch that
    # can apply, and the error names the first bad run.
    for run in runs:
        if run.status > top:
            raise StatusPatchError(
                "patch-status",
                f"status {shown(run.status)} at index {run.start} does not fit in {held.bits} bits",
                uri=uri,
                index=run.start,
                status=run.status,
            )
        if run.start + run.count > size:
            first_out = max(run.start, size)
            raise StatusPatchError(
                "patch-index",
                f"index {shown(first_out)} is out of range for a list of {size} entries",
                uri=uri,
                index=first_out,
            )
    patched = StatusList(bytearray(held.to_bytes()), held.bits, size)
    patched.aggregation_uri = held.aggregation_uri
    put = patched.set
    for run in runs:
        for idx in range(run.start, run.start + run.count):
            put(idx, run.status)
    if list_digest(patched) != digest:
        raise StatusPatchError(
            "patch-digest",
            "the patched list is not the issuer's (its SHA-256 differs): the held base is "
            "not the issuer's version; fetch a full bundle",
            uri=uri,
        )
    return patched
