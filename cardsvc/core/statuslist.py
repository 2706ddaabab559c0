"""IETF Token Status List (draft-ietf-oauth-status-list): the list and its JWT.

A status list is a byte array in which entry ``i`` occupies ``bits`` bits (1, 2, 4 or 8),
packed from the least significant bit of byte 0 upwards, so with 2 bits entry 0 is bits
0-1 of byte 0 and entry 4 is bits 0-1 of byte 1. On the wire the array is zlib-compressed
(RFC 1950) and carried as ``{"bits": n, "lst": base64url}`` in JSON or as a CBOR map with
``lst`` as a byte string.

:class:`StatusList` keeps the uncompressed array in memory, so :meth:`StatusList.get` and
:meth:`StatusList.set` are a byte index, a shift and a mask; the compressed form is built
on demand and cached until the next change.

Every parser bounds its input before expanding it: decompression stops one byte past the
limit implied by ``max_entries`` and raises :class:`InputTooLargeError`, so a zlib bomb
costs at most that much memory. Malformed input raises :class:`DecodeError`; nothing else
escapes from the parsers.

:func:`encode_status_list_jwt` and :func:`decode_status_list_jwt` wrap the list in a
Status List Token (``typ`` ``statuslist+jwt``, ES256 or SM2SM3). Decoding pins the
algorithm to the key's whatever the header says, and reports a failed check as
:class:`VerificationError` with ``check`` set to the check's name.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from operator import index as _as_index
from typing import Any, Final, NoReturn

import cbor2

from cardsvc.core.errors import (
    DecodeError,
    InputTooLargeError,
    StatusListError,
    VerificationError,
)
from cardsvc.core.errors import shown as _show
from cardsvc.core.jws import check_times, verify_jws
from cardsvc.core.keys import KeyPurpose, VerifyingKey, b64url_encode, canonical_b64url_decode
from cardsvc.core.signing import Signer, sign_jws
from cardsvc.core.trustlist import TrustList

__all__ = [
    "JWT_TYP",
    "MAX_ENTRIES",
    "MAX_JWT_SIZE",
    "Status",
    "StatusList",
    "StatusListToken",
    "decode_status_list_jwt",
    "encode_status_list_jwt",
]

#: Default upper bound on the number of entries a decoded list may have. It bounds the
#: memory a decoder can be made to allocate: 2**24 entries are 4 MiB at 2 bits.
MAX_ENTRIES: Final = 1 << 24

#: Default upper bound on a Status List Token, in characters, checked before decoding.
#: A 2**20-entry 2-bit list of random statuses makes a token of about 470 KB.
MAX_JWT_SIZE: Final = 4 * 1024 * 1024

#: The JOSE ``typ`` header value the draft requires for a Status List Token.
JWT_TYP: Final = "statuslist+jwt"

_FORMAT: Final = "status-list"
_COMPRESSION_LEVEL: Final = 9

# bits per entry -> log2(bits); also the set of allowed widths.
_LOG2_BITS: Final[Mapping[int, int]] = {1: 0, 2: 1, 4: 2, 8: 3}

# Byte pattern with the lowest bit of every entry set; count_nonzero() folds each entry
# onto that bit and counts bits.
_ENTRY_LSB_PATTERN: Final[Mapping[int, int]] = {1: 0xFF, 2: 0x55, 4: 0x11, 8: 0x01}


class Status(IntEnum):
    """Status Types registered by the draft.

    With 4 or 8 bits per entry other values are allowed; they are returned as plain ints.
    """

    VALID = 0
    INVALID = 1
    SUSPENDED = 2
    APPLICATION_SPECIFIC = 3


def _max_bytes(max_entries: int, bits: int) -> int:
    # Rounded down: a decoded list has 8 // bits entries per byte, so one more byte
    # would already exceed max_entries.
    return max_entries * bits // 8


def _max_compressed(max_bytes: int) -> int:
    # deflateBound() for incompressible input is the input plus a few bytes per stored
    # block; 1/1024 plus a constant is well above that, so no list the limit admits is
    # refused here, while a huge input is refused before zlib sees it.
    return max_bytes + (max_bytes >> 10) + 64


def _check_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise DecodeError(_FORMAT, f"bits must be an integer, not {type(bits).__name__}")
    if bits not in _LOG2_BITS:
        raise DecodeError(_FORMAT, f"bits must be 1, 2, 4 or 8, not {_show(bits)}")
    return bits


def _check_max_entries(max_entries: int) -> None:
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 0:
        raise ValueError(f"max_entries must be a non-negative int, not {_show(max_entries)}")


def _check_aggregation_uri(obj: Mapping[Any, Any]) -> str | None:
    if "aggregation_uri" not in obj:
        return None
    uri = obj["aggregation_uri"]
    if not isinstance(uri, str) or not uri:
        raise DecodeError(_FORMAT, "aggregation_uri must be a non-empty string")
    return uri


class StatusList:
    """A Token Status List held uncompressed.

    Build one with :meth:`new`, :meth:`from_compressed`, :meth:`from_json_view` or
    :meth:`from_cbor_view`. ``size`` is the number of addressable entries; a decoded list
    has ``8 * len(bytes) // bits`` of them, because the wire form does not record a size
    that is not a whole number of bytes.

    Not safe for concurrent :meth:`set` calls from several threads.
    """

    __slots__ = (
        "_bit_shift",
        "_bits",
        "_buf",
        "_byte_shift",
        "_compressed",
        "_pos_mask",
        "_size",
        "_value_mask",
        "aggregation_uri",
    )

    def __init__(
        self, buf: bytearray, bits: int, size: int, *, aggregation_uri: str | None = None
    ) -> None:
        """Take ownership of ``buf`` (not copied). Prefer the ``new``/``from_…`` builders."""
        if bits not in _LOG2_BITS or isinstance(bits, bool):
            raise StatusListError(f"bits must be 1, 2, 4 or 8, not {_show(bits)}")
        if not isinstance(buf, bytearray):
            raise StatusListError("buf must be a bytearray")
        if isinstance(size, bool) or not isinstance(size, int):
            raise StatusListError(f"size must be an int, not {_show(size)}")
        # size must fit in buf, and buf must hold no whole byte beyond it.
        if not 0 <= size <= len(buf) * 8 // bits or size <= (len(buf) - 1) * 8 // bits:
            raise StatusListError(
                f"{_show(size)} entries of {bits} bits do not fill {len(buf)} bytes"
            )
        log2 = _LOG2_BITS[bits]
        self._buf = buf
        self._bits = bits
        self._size = size
        # Entry i lives in byte i >> _byte_shift, at bit (i & _pos_mask) << _bit_shift.
        self._byte_shift = 3 - log2
        self._pos_mask = (8 >> log2) - 1
        self._bit_shift = log2
        self._value_mask = (1 << bits) - 1
        self._compressed: bytes | None = None
        self.aggregation_uri = aggregation_uri

    # -- builders ---------------------------------------------------------------------

    @classmethod
    def new(cls, size: int, bits: int = 2) -> StatusList:
        """An all-VALID list of ``size`` entries of ``bits`` bits each."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise StatusListError(f"size must be a non-negative int, not {_show(size)}")
        if isinstance(bits, bool) or bits not in _LOG2_BITS:
            raise StatusListError(f"bits must be 1, 2, 4 or 8, not {_show(bits)}")
        return cls(bytearray((size * bits + 7) // 8), bits, size)

    @classmethod
    def from_compressed(
        cls,
        lst: bytes | bytearray | memoryview,
        bits: int,
        *,
        max_entries: int = MAX_ENTRIES,
        aggregation_uri: str | None = None,
    ) -> StatusList:
        """Decompress a zlib (RFC 1950) status list.

        Raises :class:`InputTooLargeError` if the list would have more than
        ``max_entries`` entries (``size`` is then a lower bound: decompression stops one
        byte past the limit) and :class:`DecodeError` for a bad ``bits``, a stream that is
        not zlib, fails its checksum, is truncated or is followed by other bytes.
        """
        bits = _check_bits(bits)
        _check_max_entries(max_entries)
        if not isinstance(lst, bytes | bytearray | memoryview):
            raise DecodeError(_FORMAT, f"lst must be bytes, not {type(lst).__name__}")
        limit = _max_bytes(max_entries, bits)
        lst_len = memoryview(lst).nbytes
        if lst_len > _max_compressed(limit):
            raise InputTooLargeError(_FORMAT, lst_len, _max_compressed(limit))
        # wbits=15 accepts the zlib wrapper only: raw deflate and gzip are refused, which
        # is what RFC 1950 asks for. max_length caps the output, so a bomb stops early.
        inflater = zlib.decompressobj(wbits=15)
        try:
            raw = inflater.decompress(lst, limit + 1)
        except zlib.error as exc:
            raise DecodeError(_FORMAT, f"lst is not a valid zlib stream: {exc}") from None
        if len(raw) > limit:
            raise InputTooLargeError(_FORMAT, len(raw), limit)
        if not inflater.eof:
            raise DecodeError(_FORMAT, "lst is a truncated zlib stream")
        if inflater.unused_data:
            raise DecodeError(
                _FORMAT, f"{len(inflater.unused_data)} bytes follow the end of the zlib stream"
            )
        return cls(bytearray(raw), bits, len(raw) * 8 // bits, aggregation_uri=aggregation_uri)

    @classmethod
    def from_json_view(
        cls, obj: Mapping[str, Any], *, max_entries: int = MAX_ENTRIES
    ) -> StatusList:
        """Parse the JSON form ``{"bits": n, "lst": "<base64url>"}`` (already JSON-decoded).

        ``aggregation_uri`` is kept if present; other members are ignored, as the draft
        allows extensions.
        """
        _check_max_entries(max_entries)
        if not isinstance(obj, Mapping):
            raise DecodeError(
                _FORMAT, f"status list must be a JSON object, not {type(obj).__name__}"
            )
        for name in ("bits", "lst"):
            if name not in obj:
                raise DecodeError(_FORMAT, f"missing member {name!r}")
        bits = _check_bits(obj["bits"])
        lst = obj["lst"]
        if not isinstance(lst, str):
            raise DecodeError(_FORMAT, f"lst must be a string, not {type(lst).__name__}")
        text_limit = (_max_compressed(_max_bytes(max_entries, bits)) * 4 + 2) // 3
        if len(lst) > text_limit:
            raise InputTooLargeError(_FORMAT, len(lst), text_limit)
        compressed = canonical_b64url_decode(lst, format_name=_FORMAT, what="lst")
        return cls.from_compressed(
            compressed,
            bits,
            max_entries=max_entries,
            aggregation_uri=_check_aggregation_uri(obj),
        )

    @classmethod
    def from_cbor_view(
        cls, data: bytes | bytearray | Mapping[Any, Any], *, max_entries: int = MAX_ENTRIES
    ) -> StatusList:
        """Parse the CBOR form: a map ``{"bits": uint, "lst": bstr}``, encoded or decoded.

        Pass the encoded map, or the map a CWT decoder produced (the ``status_list``
        claim, 65533). Unknown keys are ignored; duplicate keys and trailing bytes after
        the map are refused.
        """
        _check_max_entries(max_entries)
        if isinstance(data, bytes | bytearray):
            obj = _decode_cbor(data, max_entries)
        elif isinstance(data, Mapping):
            obj = data
        else:
            raise DecodeError(_FORMAT, f"expected CBOR bytes or a map, not {type(data).__name__}")
        for name in ("bits", "lst"):
            if name not in obj:
                raise DecodeError(_FORMAT, f"missing key {name!r}")
        bits = _check_bits(obj["bits"])
        lst = obj["lst"]
        if not isinstance(lst, bytes | bytearray):
            raise DecodeError(_FORMAT, f"lst must be a byte string, not {type(lst).__name__}")
        return cls.from_compressed(
            lst, bits, max_entries=max_entries, aggregation_uri=_check_aggregation_uri(obj)
        )

    # -- entries ----------------------------------------------------------------------

    @property
    def bits(self) -> int:
        """Bits per entry: 1, 2, 4 or 8."""
        return self._bits

    @property
    def size(self) -> int:
        """Number of addressable entries."""
        return self._size

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"StatusList(bits={self._bits}, size={self._size})"

    def get(self, index: int) -> int:
        """The status of entry ``index`` (a :class:`Status` value for values 0-3).

        Raises :class:`StatusListError` if ``index`` is not an int in ``range(size)``.
        """
        # The common case (a plain int in range) is tested first and inline: this is the
        # hot path of every status check. Anything else, including int subclasses and
        # bad input, goes through _checked_index.
        if type(index) is int and 0 <= index < self._size:
            return (
                self._buf[index >> self._byte_shift]
                >> ((index & self._pos_mask) << self._bit_shift)
            ) & self._value_mask
        return self.get(self._checked_index(index))

    def set(self, index: int, status: int) -> None:
        """Set entry ``index`` to ``status`` (``0 <= status < 2**bits``).

        Raises :class:`StatusListError` for an index out of range or a status that does
        not fit in ``bits`` bits (e.g. SUSPENDED in a 1-bit list).
        """
        mask = self._value_mask
        if not (
            type(index) is int
            and 0 <= index < self._size
            and type(status) is int
            and 0 <= status <= mask
        ):
            index = self._checked_index(index)
            status = self._checked_status(status)
        shift = (index & self._pos_mask) << self._bit_shift
        pos = index >> self._byte_shift
        buf = self._buf
        buf[pos] = (buf[pos] & ~(mask << shift)) | (status << shift)
        self._compressed = None

    def count_nonzero(self) -> int:
        """Number of entries whose status is not VALID."""
        if self._bits == 8:
            return len(self._buf) - self._buf.count(0)
        # One big-int pass instead of a Python loop per entry: OR every bit of an entry
        # down onto its lowest bit, keep only those bits, count them.
        value = int.from_bytes(self._buf, "little")
        folded = value
        for shift in range(1, self._bits):
            folded |= value >> shift
        lsb = int.from_bytes(bytes([_ENTRY_LSB_PATTERN[self._bits]]) * len(self._buf), "little")
        return (folded & lsb).bit_count()

    def to_bytes(self) -> bytes:
        """A copy of the uncompressed byte array."""
        return bytes(self._buf)

    # -- encoders ---------------------------------------------------------------------

    def compressed(self) -> bytes:
        """The zlib (RFC 1950, level 9) form of the list, cached until the next :meth:`set`."""
        if self._compressed is None:
            self._compressed = zlib.compress(self._buf, _COMPRESSION_LEVEL)
        return self._compressed

    def to_json_view(self) -> dict[str, Any]:
        """The JSON form: ``{"bits": n, "lst": "<base64url>"}`` (plus ``aggregation_uri``)."""
        view: dict[str, Any] = {"bits": self._bits, "lst": b64url_encode(self.compressed())}
        if self.aggregation_uri is not None:
            view["aggregation_uri"] = self.aggregation_uri
        return view

    def to_cbor_view(self) -> bytes:
        """The CBOR form: the encoded map ``{"bits": uint, "lst": bstr}``."""
        view: dict[str, Any] = {"bits": self._bits, "lst": self.compressed()}
        if self.aggregation_uri is not None:
            view["aggregation_uri"] = self.aggregation_uri
        return cbor2.dumps(view)

    # -- slow paths -------------------------------------------------------------------

    def _checked_index(self, index: object) -> int:
        if isinstance(index, bool):
            self._bad_index(index)
        try:
            value = _as_index(index)  # type: ignore[arg-type]
        except TypeError:
            self._bad_index(index)
        if not 0 <= value < self._size:
            self._bad_index(index)
        return value

    def _bad_index(self, index: object) -> NoReturn:
        raise StatusListError(
            f"index {_show(index)} is out of range for a status list of {self._size} entries"
            if isinstance(index, int) and not isinstance(index, bool)
            else f"index must be an int, not {type(index).__name__}"
        )

    def _checked_status(self, status: object) -> int:
        if not isinstance(status, bool):
            try:
                value = _as_index(status)  # type: ignore[arg-type]
            except TypeError:
                pass
            else:
                if 0 <= value <= self._value_mask:
                    return value
        raise StatusListError(
            f"status {_show(status)} does not fit in {self._bits} bits"
            f" (allowed 0..{self._value_mask})"
        )


def _decode_cbor(data: bytes | bytearray, max_entries: int) -> Mapping[Any, Any]:
    # The map holds two small items besides lst; anything much larger than the largest
    # lst the limit admits is refused before cbor2 reads it.
    limit = _max_compressed(_max_bytes(max_entries, 8)) + 256
    if len(data) > limit:
        raise InputTooLargeError(_FORMAT, len(data), limit)
    stream = io.BytesIO(data)
    # Built outside the try: these options need cbor2 6, and an older cbor2 must fail
    # loudly here rather than turn every list into a DecodeError.
    decoder = cbor2.CBORDecoder(
        stream, max_depth=16, allow_duplicate_keys=False, strict_hashable_types=True
    )
    try:
        obj = decoder.decode()
    # cbor2 decodes tags such as datetimes, decimals and regexes itself and each can fail
    # with its own exception type; none of them may escape as anything but DecodeError.
    except Exception as exc:
        raise DecodeError(_FORMAT, f"invalid CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise DecodeError(_FORMAT, f"{len(data) - stream.tell()} bytes follow the CBOR map")
    if not isinstance(obj, Mapping):
        raise DecodeError(_FORMAT, f"status list must be a CBOR map, not {type(obj).__name__}")
    return obj


# -- Status List Token (JWT) --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusListToken:
    """The verified content of a Status List Token.

    ``ttl`` is ``None`` when the token does not carry one (the draft only recommends it);
    ``kid`` is the header's key ID, ``None`` if absent.
    """

    sub: str
    iat: datetime
    exp: datetime
    ttl: int | None
    status_list: StatusList
    kid: str | None


def _require_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def encode_status_list_jwt(
    status_list: StatusList,
    *,
    sub: str,
    iat: datetime,
    exp: datetime,
    ttl: int,
    signer: Signer,
) -> str:
    """Sign ``status_list`` as a Status List Token (JWT, the signer's alg, typ statuslist+jwt).

    ``sub`` is the URI the list is published at; ``signer`` holds a ``status-list`` key.
    Times are truncated to whole seconds. Raises :class:`ValueError` for naive datetimes,
    ``exp`` not after ``iat``, or a ``ttl`` that is not a positive int.
    """
    _require_aware("iat", iat)
    _require_aware("exp", exp)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValueError(f"ttl must be a positive int, not {_show(ttl)}")
    iat_s = int(iat.timestamp())
    exp_s = int(exp.timestamp())
    if exp_s <= iat_s:
        raise ValueError("exp must be after iat")
    payload = {
        "sub": sub,
        "iat": iat_s,
        "exp": exp_s,
        "ttl": ttl,
        "status_list": status_list.to_json_view(),
    }
    return sign_jws({"typ": JWT_TYP}, payload, signer)


def verify_status_list_token(
    token: str,
    *,
    trust_list: TrustList,
    expected_sub: str | None,
    now: datetime,
    leeway: timedelta,
    max_size: int = MAX_JWT_SIZE,
    max_entries: int = MAX_ENTRIES,
) -> StatusListToken:
    """Verify a Status List Token signed by a ``status-list`` key of ``trust_list``.

    See :func:`decode_status_list_jwt` for the checks; the key must also be listed for
    purpose ``status-list`` and be in its window at ``now`` (``key-unknown``,
    ``key-purpose``, ``key-window``).
    """

    def key_for(header: Mapping[str, Any]) -> VerifyingKey:
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise VerificationError("key-unknown", "header has no kid")
        return trust_list.find(kid, KeyPurpose.STATUS_LIST, now=now).key

    return _verify(token, key_for, expected_sub, now, leeway, max_size, max_entries)


def decode_status_list_jwt(
    token: str,
    *,
    key: VerifyingKey,
    expected_sub: str | None,
    now: datetime,
    leeway: timedelta,
    max_size: int = MAX_JWT_SIZE,
    max_entries: int = MAX_ENTRIES,
) -> StatusListToken:
    """Verify a Status List Token with one known ``key`` and return its content.

    The algorithm is the key's (ES256 or SM2SM3) whatever the header says. Failures raise
    :class:`VerificationError` with ``check``: ``crit``, ``typ`` (not
    ``statuslist+jwt``), ``algorithm``, ``signature``, ``claims`` (``sub``, ``iat``,
    ``exp`` or ``status_list`` missing or mistyped), ``expired``, ``issued-in-future``,
    ``not-yet-valid``, ``sub`` (not ``expected_sub``, when given). The list is
    decompressed only after all of them pass.

    A token longer than ``max_size`` characters, or a list of more than ``max_entries``
    entries, raises :class:`InputTooLargeError`; a token that is not a well-formed compact
    JWS or holds a malformed list raises :class:`DecodeError`.
    """
    return _verify(token, lambda _header: key, expected_sub, now, leeway, max_size, max_entries)


def _verify(
    token: str,
    key_for: Callable[[Mapping[str, Any]], VerifyingKey],
    expected_sub: str | None,
    now: datetime,
    leeway: timedelta,
    max_size: int,
    max_entries: int,
) -> StatusListToken:
    _require_aware("now", now)
    if not isinstance(leeway, timedelta) or leeway < timedelta(0):
        raise ValueError("leeway must be a non-negative timedelta")
    verified = verify_jws(token, typ=JWT_TYP, key_for=key_for, max_size=max_size)
    claims = verified.claims
    for name in ("sub", "iat", "exp", "status_list"):
        if name not in claims:
            raise VerificationError("claims", f"missing required claim {name!r}")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        raise VerificationError("claims", "sub must be a non-empty string")
    ttl = claims.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
        raise VerificationError("claims", f"ttl must be a positive integer, not {_show(ttl)}")
    status_view = claims["status_list"]
    if not isinstance(status_view, dict):
        raise VerificationError("claims", "status_list must be a JSON object")
    check_times(claims, now=now, leeway=leeway)
    if expected_sub is not None and sub != expected_sub:
        raise VerificationError(
            "sub", f"sub {_show(sub)} is not the expected {_show(expected_sub)}"
        )
    kid = verified.header.get("kid")
    return StatusListToken(
        sub=sub,
        iat=datetime.fromtimestamp(claims["iat"], tz=UTC),
        exp=datetime.fromtimestamp(claims["exp"], tz=UTC),
        ttl=ttl,
        status_list=StatusList.from_json_view(status_view, max_entries=max_entries),
        kid=kid if isinstance(kid, str) else None,
    )
