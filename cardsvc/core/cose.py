"""COSE_Sign1 (RFC 9052) with the profile of our QR tokens: ES256, or SM2SM3 for SM2 keys.

The wire form is ``18([protected bstr, unprotected map, payload bstr, signature bstr])``,
tagged or not. The signature is ECDSA P-256 / SHA-256 (ES256, -7) or SM2 with SM3 (SM2SM3,
the private-use -66037 of :mod:`cardsvc.core.sm2`) over the Sig_structure
``["Signature1", protected, external_aad, payload]``, in raw ``r || s`` form.

Our profile is stricter than RFC 9052 (as the EU Digital COVID Certificate is):

* ``alg`` must be the key's own algorithm (ES256 -7 for a P-256 key, SM2SM3 -66037 for an
  SM2 key: the verifier's key decides, the header only has to agree) and must sit in the
  protected header;
* the protected header holds ``alg`` and at most ``kid`` (4): no ``crit``, no other label;
* for ES256 the signature's ``s`` must be the low one (``s <= n/2``);
* the structure, its protected header and the payloads read through :func:`decode_cbor`
  must be deterministic CBOR (RFC 8949 section 4.2.1): shortest heads, definite lengths,
  map keys in the bytewise order of their encodings, no duplicate key; no floats;
* no CBOR tag may appear inside the structure (tag 18 outside it, in one byte), no label in
  both header buckets, no detached payload.

So everything the issuer signs has one encoding: a second spelling of a token is refused,
never accepted as the same token (docs/verifying.md, "Encoding profile").

:func:`decode_sign1` only parses (raising :class:`~cardsvc.core.errors.DecodeError`);
:func:`verify_sign1` applies the profile and checks the signature (raising
:class:`~cardsvc.core.errors.VerificationError` naming the failed check) and returns the
payload.
"""

from __future__ import annotations

import functools
import io
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeAlias

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    encode_dss_signature,
)

from cardsvc.core.errors import DecodeError, InputTooLargeError, VerificationError
from cardsvc.core.errors import shown as shown_input
from cardsvc.core.keys import ES256, VerifyingKey
from cardsvc.core.signing import P256_ORDER, Signer, low_s
from cardsvc.core.sm2 import COSE_ALG_SM2SM3, SM2SM3, Sm2PublicKey

__all__ = [
    "ALG_ES256",
    "ALG_SM2SM3",
    "HEADER_ALG",
    "HEADER_CONTENT_TYPE",
    "HEADER_CRIT",
    "HEADER_KID",
    "MAX_SIGN1_SIZE",
    "TAG_SIGN1",
    "HeaderLabel",
    "HeaderMap",
    "Sign1Message",
    "decode_cbor",
    "decode_sign1",
    "encode_cbor",
    "sign1",
    "verify_sign1",
]

#: COSE algorithm identifier of ECDSA P-256 with SHA-256 (RFC 9053 section 2.1).
ALG_ES256: Final = -7
#: Private-use COSE algorithm identifier of SM2 with SM3 (:mod:`cardsvc.core.sm2`).
ALG_SM2SM3: Final = COSE_ALG_SM2SM3
_COSE_ALGS: Final = {ES256: ALG_ES256, SM2SM3: ALG_SM2SM3}
#: Header parameter labels (RFC 9052 section 3.1).
HEADER_ALG: Final = 1
HEADER_CRIT: Final = 2
HEADER_CONTENT_TYPE: Final = 3
HEADER_KID: Final = 4
#: CBOR tag of COSE_Sign1 (RFC 9052 section 2).
TAG_SIGN1: Final = 18

#: Largest encoded COSE_Sign1 accepted. A version 40 QR code in alphanumeric mode holds 4296
#: base45 characters, that is 2864 bytes, so no scanned token comes near it.
MAX_SIGN1_SIZE: Final = 4096

HeaderLabel: TypeAlias = int | str
HeaderMap: TypeAlias = dict[HeaderLabel, object]

_FORMAT = "cose"
_P256_BYTES = 32
_SIGNATURE_BYTES = 2 * _P256_BYTES
_HALF_ORDER: Final = P256_ORDER // 2
# The only protected labels of our profile: alg is enforced here, kid is how the caller
# picked the key. A header carrying anything else asks for processing we do not do.
_PROFILE_LABELS: Final = frozenset({HEADER_ALG, HEADER_KID})
# Ranks putting integer map keys in the bytewise order of their encodings: every unsigned
# integer (major type 0) before every negative one (major type 1, argument -1 - k).
_NINT_RANK_BASE: Final = 1 << 64
# Every float a decoded item can hold re-encodes as fb (float64) or, for NaN and the two
# infinities, in half precision (f9 7e 00, f9 7c 00, f9 fc 00): a payload without an fb or
# f9 byte holds no float, and only one with such a byte is walked.
_FLOAT_HEADS: Final = (b"\xfb", b"\xf9")
_OTHER_COSE_TAGS: Final = {
    16: "COSE_Encrypt0",
    17: "COSE_Mac0",
    61: "CWT",
    96: "COSE_Encrypt",
    97: "COSE_Mac",
    98: "COSE_Sign",
}
# Names for the reason of an "algorithm" failure (RFC 9053, IANA COSE Algorithms).
_ALG_NAMES: Final = {
    -7: "ES256",
    COSE_ALG_SM2SM3: "SM2SM3",
    -35: "ES384",
    -36: "ES512",
    -8: "EdDSA",
    -37: "PS256",
    -257: "RS256",
    4: "HMAC 256/64",
    5: "HMAC 256/256",
}
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
# Array of four, then the text "Signature1": the fixed head of every Sig_structure.
_SIG1_STRUCTURE_HEAD: Final = b"\x84\x6aSignature1"
_MAJOR_ARRAY = 4
_MAJOR_TAG = 6
# Heads of byte strings up to 255 bytes (protected header, AAD, most payloads), prebuilt.
_SHORT_BSTR_HEADS: Final = tuple(
    bytes((0x40 | n,)) if n < 24 else bytes((0x58, n)) for n in range(0x100)
)
# {1: -7} and {1: -7, 4: kid} in deterministic CBOR, as sign1 writes them.
_PROTECTED_ES256: Final = b"\xa1\x01\x26"
_PROTECTED_ES256_KID: Final = b"\xa2\x01\x26\x04"
# {1: -66037} and {1: -66037, 4: kid}: -66037 is 3a 00 01 01 f4 (argument 66036).
_PROTECTED_SM2: Final = b"\xa1\x01\x3a\x00\x01\x01\xf4"
_PROTECTED_SM2_KID: Final = b"\xa2\x01\x3a\x00\x01\x01\xf4\x04"
_SIGN1_TAG_HEAD: Final = b"\xd2"  # tag 18
# The smallest length each long head (additional information 24 to 27) may carry.
_SHORTEST_ABOVE: Final = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}
# Header parameters nest little; this keeps hostile nesting far from the C stack limit.
_MAX_DEPTH = 16


@dataclass(frozen=True, kw_only=True, slots=True)
class Sign1Message:
    """A parsed, not yet verified, COSE_Sign1; build it with :func:`decode_sign1`.

    ``protected_bytes`` are the protected header exactly as received: the signature covers
    these bytes, never a re-encoding of ``protected`` (an empty header is the one case
    RFC 9052 signs as a zero-length bstr whatever its encoding).
    """

    protected: HeaderMap
    protected_bytes: bytes
    unprotected: HeaderMap
    payload: bytes
    signature: bytes

    @property
    def kid(self) -> bytes | None:
        """Key identifier, from the protected header if there, else the unprotected one.

        Unauthenticated until :func:`verify_sign1` succeeds: use it only to look a key up
        in a trust list, never to decide that a key is trusted.
        """
        kid = self.protected.get(HEADER_KID, self.unprotected.get(HEADER_KID))
        return kid if isinstance(kid, bytes) else None

    @property
    def alg(self) -> int | str | None:
        """Algorithm from the protected header; our profile ignores an unprotected one."""
        alg = self.protected.get(HEADER_ALG)
        return alg if isinstance(alg, int | str) else None


def decode_sign1(data: bytes, *, max_size: int = MAX_SIGN1_SIZE) -> Sign1Message:
    """Parse a tagged (18) or untagged COSE_Sign1 without verifying it.

    Raises :class:`~cardsvc.core.errors.InputTooLargeError` for input above ``max_size``
    bytes, before any decoding, and :class:`~cardsvc.core.errors.DecodeError` for anything
    that is not exactly one well-formed COSE_Sign1 of our profile.
    """
    if not isinstance(data, bytes):
        raise DecodeError(_FORMAT, f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise InputTooLargeError(_FORMAT, len(data), max_size)

    offset = _skip_sign1_tag(data)
    parts = _split_plain(data, offset)
    general = parts is None
    if parts is None:
        parts = _split_cbor(data, offset)
    protected_bytes, unprotected, payload, signature = parts

    protected = _decode_protected(protected_bytes)
    unprotected_map: HeaderMap = {}
    if unprotected:
        unprotected_map = _header_map(unprotected, "unprotected")
        both = protected.keys() & unprotected_map.keys()
        if both:
            raise DecodeError(_FORMAT, f"labels {sorted(map(repr, both))} in both header buckets")
    if general:
        # The plain form has shortest heads by construction; any other form is re-encoded,
        # once its parts are known to be well typed, and must come out the same.
        _require_deterministic(list(parts), data[offset:], "COSE_Sign1")
    return Sign1Message(
        protected=protected,
        protected_bytes=protected_bytes,
        unprotected=unprotected_map,
        payload=payload,
        signature=signature,
    )


def verify_sign1(
    msg: Sign1Message,
    public_key: ec.EllipticCurvePublicKey | VerifyingKey,
    *,
    external_aad: bytes = b"",
) -> bytes:
    """Check ``msg`` against our profile and ``public_key``; return the verified payload.

    ``public_key`` is a :class:`~cardsvc.core.keys.VerifyingKey` (its ``alg`` is pinned:
    ES256 or SM2SM3) or a bare P-256 key (ES256). Raises
    :class:`~cardsvc.core.errors.VerificationError` whose ``check`` is ``algorithm`` (alg
    missing from the protected header, or not the key's algorithm), ``crit`` (a ``crit``
    header, protected or not), ``header`` (a protected label other than alg and kid),
    ``key`` (not a P-256 or SM2 public key) or ``signature`` (not 64 bytes, high-S for
    ES256, or not valid).
    """
    key_alg = public_key.alg if isinstance(public_key, VerifyingKey) else ES256
    expected = _COSE_ALGS[key_alg]
    alg = msg.protected.get(HEADER_ALG)
    if alg is None:
        detail = "alg must be in the protected header"
        if HEADER_ALG in msg.unprotected:
            detail += " (it is only in the unprotected header)"
        raise VerificationError("algorithm", detail)
    if alg != expected:
        name = _ALG_NAMES.get(alg) if type(alg) is int else None
        shown = f"{alg!r} ({name})" if name else repr(alg)
        raise VerificationError("algorithm", f"alg {shown} is not {key_alg} ({expected})")
    if HEADER_CRIT in msg.unprotected:
        raise VerificationError("crit", "crit must be in the protected header")
    if HEADER_CRIT in msg.protected:
        critical = shown_input(msg.protected[HEADER_CRIT])
        raise VerificationError("crit", f"crit {critical} is refused: nothing here is critical")
    if not msg.protected.keys() <= _PROFILE_LABELS:
        extra = sorted(map(repr, msg.protected.keys() - _PROFILE_LABELS))
        raise VerificationError(
            "header", f"protected labels {', '.join(extra)} are not in our profile (alg 1, kid 4)"
        )
    if isinstance(public_key, VerifyingKey):
        if isinstance(public_key.public_key, Sm2PublicKey):
            public_key.verify_raw(msg.signature, _to_be_signed(msg, external_aad))
            return msg.payload
        public_key = public_key.public_key
    if not _is_ec_public_key_class(type(public_key)) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise VerificationError(
            "key", f"ES256 needs a P-256 public key, got {_key_name(public_key)}"
        )
    signature = msg.signature
    if len(signature) != _SIGNATURE_BYTES:
        raise VerificationError(
            "signature", f"ES256 signature must be {_SIGNATURE_BYTES} bytes, got {len(signature)}"
        )
    s = int.from_bytes(signature[_P256_BYTES:])
    if s > _HALF_ORDER:
        raise VerificationError("signature", "s is above n/2: only the low-S form is accepted")
    der = encode_dss_signature(int.from_bytes(signature[:_P256_BYTES]), s)
    try:
        public_key.verify(der, _to_be_signed(msg, external_aad), _ECDSA_SHA256)
    except InvalidSignature:
        raise VerificationError("signature", "ES256 signature does not verify") from None
    return msg.payload


def sign1(
    payload: bytes,
    signer: Signer,
    *,
    kid: bytes | None = None,
    external_aad: bytes = b"",
    tagged: bool = True,
) -> bytes:
    """Sign ``payload`` as a COSE_Sign1 with the signer's algorithm; return its encoding.

    The protected header is ``{1: alg}`` (-7 for ES256, -66037 for SM2SM3), plus
    ``{4: kid}`` when a kid is given (in the protected header, as the EU certificate does,
    so it is signed too); the unprotected header is empty. ``signer`` returns raw r||s, as
    COSE wants (an HSM key works too). Raises :class:`ValueError` for another algorithm.
    """
    if signer.alg == ES256:
        bare, with_kid = _PROTECTED_ES256, _PROTECTED_ES256_KID
    elif signer.alg == SM2SM3:
        bare, with_kid = _PROTECTED_SM2, _PROTECTED_SM2_KID
    else:
        raise ValueError(f"COSE_Sign1 here is ES256 or SM2SM3, not {signer.alg}")
    # Written out directly, as the Sig_structure is: the same bytes as cbor2's canonical
    # encoding ({1: alg, 4: kid}, then the array), without a generic encoder per token.
    protected_bytes = bare
    if kid is not None:
        protected_bytes = with_kid + _bstr_head(len(kid)) + kid
    # Low-S whatever the signer drew (an HSM's s is either): verifiers take no other form.
    signature = low_s(
        signer.sign(_sig_structure(protected_bytes, external_aad, payload)), signer.alg
    )
    return b"".join(
        (
            _SIGN1_TAG_HEAD if tagged else b"",
            b"\x84",  # array of four
            _bstr_head(len(protected_bytes)),
            protected_bytes,
            b"\xa0",  # empty unprotected map
            _bstr_head(len(payload)),
            payload,
            _bstr_head(len(signature)),
            signature,
        )
    )


def decode_cbor(data: bytes, *, what: str) -> object:
    """Decode one CBOR item (a signed payload) under the same limits as the envelope.

    Deterministic CBOR only (RFC 8949 section 4.2.1: shortest heads, definite lengths, map
    keys in bytewise order, no duplicates), no floats, no tags, nesting at most 16 deep, no
    trailing bytes; any failure is a :class:`~cardsvc.core.errors.DecodeError`.
    """
    # cbor2.loads, not a decoder over a stream: ~0.6 us less on every token. It ignores
    # trailing bytes, which the re-encoding comparison then refuses.
    try:
        item = cbor2.loads(data, **_DECODER_OPTIONS)
    except Exception as exc:  # see _decode_cbor: anything raised means "not valid"
        raise DecodeError(_FORMAT, f"invalid CBOR in {what}: {_cbor_failure(exc)}") from None
    _require_deterministic(item, data, what)
    return item


def encode_cbor(value: object) -> bytes:
    """The deterministic CBOR encoding of ``value``: the one :func:`decode_cbor` takes.

    For what the issuer signs: integers, byte and text strings, lists and maps of them,
    maps sorted by the bytes of their encoded keys (RFC 8949 section 4.2.1; cbor2's own
    ``canonical`` sorts shorter keys first, which differs for mixed key types). Raises
    :class:`ValueError` for a float, which none of our structures holds.
    """
    return cbor2.dumps(_in_deterministic_order(value))


def _in_deterministic_order(value: object) -> object:
    if isinstance(value, Mapping):
        items = [(cbor2.dumps(k), k, _in_deterministic_order(v)) for k, v in value.items()]
        return {k: v for _, k, v in sorted(items, key=lambda item: item[0])}
    if isinstance(value, list | tuple):
        return [_in_deterministic_order(v) for v in value]
    if isinstance(value, float):
        raise ValueError("floats have no place in what the issuer signs")
    return value


def _require_deterministic(item: object, data: bytes, what: str) -> None:
    """Refuse ``data`` unless it is the deterministic encoding of the ``item`` it decoded to.

    Map key order was checked while decoding (:func:`_keys_in_order`). Re-encoding keeps
    that order and writes every head in its shortest form, so equal bytes mean shortest
    heads throughout: one C call on a payload of ~60 bytes.
    """
    try:
        again = cbor2.dumps(item)
    except Exception:
        again = b""
    if again != data:
        if again and data.startswith(again):
            raise DecodeError(_FORMAT, f"{len(data) - len(again)} trailing byte(s) after {what}")
        raise DecodeError(
            _FORMAT, f"{what} is not deterministic CBOR (RFC 8949 section 4.2.1): "
            "a head longer than needed"
        )  # fmt: skip
    if (_FLOAT_HEADS[0] in data or _FLOAT_HEADS[1] in data) and _holds_float(item):
        raise DecodeError(_FORMAT, f"{what} holds a float, which our profile does not allow")


def _holds_float(item: object) -> bool:
    if isinstance(item, float):
        return True
    if isinstance(item, Mapping):
        return any(_holds_float(k) or _holds_float(v) for k, v in item.items())
    if isinstance(item, list | tuple):
        return any(_holds_float(v) for v in item)
    return False


class _KeyOrderError(Exception):
    """Raised from cbor2's object hook: a map whose keys are not in deterministic order."""


def _keys_in_order(value: Mapping[Any, Any], immutable: bool) -> Mapping[Any, Any]:
    """cbor2's object hook: the keys of each map in the bytewise order of their encodings."""
    if len(value) < 2:
        return value
    previous = -1
    for key in value:
        if type(key) is not int:
            break
        rank = key if key >= 0 else _NINT_RANK_BASE + ~key
        if rank <= previous:
            raise _KeyOrderError
        previous = rank
    else:
        return value
    encoded = [cbor2.dumps(key) for key in value]
    if any(a >= b for a, b in itertools.pairwise(encoded)):
        raise _KeyOrderError
    return value


def _to_be_signed(msg: Sign1Message, external_aad: bytes) -> bytes:
    """The Sig_structure of a received message.

    The protected bytes go in as received, with one exception from RFC 9052 section 3: an
    empty protected header counts as the zero-length bstr, even when sent as ``h'a0'``
    (COSE WG vector sign-pass-01). Our profile rejects an empty protected header anyway,
    since alg must be in it.
    """
    protected_bytes = msg.protected_bytes if msg.protected else b""
    return _sig_structure(protected_bytes, external_aad, msg.payload)


def _sig_structure(protected_bytes: bytes, external_aad: bytes, payload: bytes) -> bytes:
    """``["Signature1", protected, external_aad, payload]`` in deterministic CBOR.

    Written out directly: the three byte strings need only their length heads, and this
    gives the same bytes as ``cbor2.dumps(..., canonical=True)`` without a generic encoder.
    """
    return b"".join(
        (
            _SIG1_STRUCTURE_HEAD,
            _bstr_head(len(protected_bytes)),
            protected_bytes,
            _bstr_head(len(external_aad)),
            external_aad,
            _bstr_head(len(payload)),
            payload,
        )
    )


def _bstr_head(length: int) -> bytes:
    """The shortest CBOR head of a byte string of ``length`` bytes (RFC 8949 4.2.1)."""
    if length <= 0xFF:
        return _SHORT_BSTR_HEADS[length]
    if length <= 0xFFFF:
        return b"\x59" + length.to_bytes(2)
    if length <= 0xFFFFFFFF:
        return b"\x5a" + length.to_bytes(4)
    return b"\x5b" + length.to_bytes(8)


# The four members of a COSE_Sign1: protected bstr, unprotected map, payload, signature.
_Parts: TypeAlias = tuple[bytes, Mapping[object, object], bytes, bytes]
# The unprotected header of the form sign1 writes; shared and read-only.
_EMPTY_MAP: Final[Mapping[object, object]] = MappingProxyType({})


def _split_plain(data: bytes, offset: int) -> _Parts | None:
    """The four members of the form sign1 writes, parsed by hand; None for any other form.

    That form is an array of 4 holding three definite-length byte strings around an empty
    map, ending at the end of ``data``. Reading it directly saves the ~2 us of a cbor2
    decoder on every token; anything else, valid or not, goes through :func:`_split_cbor`.
    """
    if offset >= len(data) or data[offset] != 0x84:
        return None
    protected = _read_bstr(data, offset + 1)
    if protected is None or protected[1] >= len(data) or data[protected[1]] != 0xA0:
        return None
    payload = _read_bstr(data, protected[1] + 1)
    if payload is None:
        return None
    signature = _read_bstr(data, payload[1])
    if signature is None or signature[1] != len(data):
        return None
    return protected[0], _EMPTY_MAP, payload[0], signature[0]


def _read_bstr(data: bytes, pos: int) -> tuple[bytes, int] | None:
    """The byte string at ``pos`` with a shortest head, and the offset after it, if any."""
    if pos >= len(data) or not 0x40 <= data[pos] <= 0x5B:
        return None
    info = data[pos] - 0x40
    if info < 24:
        start, length = pos + 1, info
    else:
        start = pos + 1 + (1 << (info - 24))
        length = int.from_bytes(data[pos + 1 : start])
        if length < _SHORTEST_ABOVE[info]:
            return None  # a longer head than needed: the general path refuses it
    end = start + length
    if end > len(data):
        return None
    return data[start:end], end


def _split_cbor(data: bytes, offset: int) -> _Parts:
    """The four members of any COSE_Sign1 array, decoded and type-checked with cbor2."""
    item = _decode_cbor(data, offset, "COSE_Sign1")
    if not isinstance(item, list | tuple):
        raise DecodeError(_FORMAT, f"COSE_Sign1 must be an array, got {_cbor_type(item)}")
    if len(item) != 4:
        raise DecodeError(_FORMAT, f"COSE_Sign1 must be an array of 4, got {len(item)}")
    protected_bytes, unprotected, payload, signature = item
    if not isinstance(protected_bytes, bytes):
        raise DecodeError(_FORMAT, f"protected header must be a bstr, got {_cbor_type(item[0])}")
    if not isinstance(unprotected, Mapping):
        raise DecodeError(_FORMAT, f"unprotected header must be a map, got {_cbor_type(item[1])}")
    if payload is None:
        raise DecodeError(_FORMAT, "detached payload (nil) is not supported")
    if not isinstance(payload, bytes):
        raise DecodeError(_FORMAT, f"payload must be a bstr, got {_cbor_type(payload)}")
    if not isinstance(signature, bytes):
        raise DecodeError(_FORMAT, f"signature must be a bstr, got {_cbor_type(signature)}")
    return protected_bytes, unprotected, payload, signature


def _skip_sign1_tag(data: bytes) -> int:
    """Offset of the COSE_Sign1 array: past a leading tag 18, 0 when untagged.

    The outer tag is read here rather than by cbor2 so that every tag cbor2 meets is a
    nested one, which the profile forbids, and so other COSE tags get a clear reason.
    """
    if not data:
        raise DecodeError(_FORMAT, "empty input")
    major, info = data[0] >> 5, data[0] & 0x1F
    if major == _MAJOR_ARRAY:
        return 0
    if major != _MAJOR_TAG:
        raise DecodeError(_FORMAT, "expected a COSE_Sign1 array, tagged 18 or untagged")
    if info == 24 and len(data) > 1 and data[1] == TAG_SIGN1:
        raise DecodeError(_FORMAT, "tag 18 must be in its shortest form, d2 (deterministic CBOR)")
    if info < 24:
        tag, offset = info, 1
    elif info <= 27:
        size = 1 << (info - 24)
        if len(data) < 1 + size:
            raise DecodeError(_FORMAT, "truncated CBOR tag")
        tag, offset = int.from_bytes(data[1 : 1 + size]), 1 + size
    else:
        raise DecodeError(_FORMAT, f"malformed CBOR tag head 0x{data[0]:02x}")
    if tag != TAG_SIGN1:
        name = _OTHER_COSE_TAGS.get(tag)
        what = f"{name} (tag {tag})" if name else f"CBOR tag {tag}"
        raise DecodeError(_FORMAT, f"{what} is not a COSE_Sign1 (tag {TAG_SIGN1})")
    return offset


class _NestedTagError(Exception):
    """Raised from cbor2's tag hooks; the tag number makes the DecodeError reason."""

    def __init__(self, tag: int | None) -> None:
        super().__init__(tag)
        self.tag = tag


def _reject_unknown_tag(tag: cbor2.CBORTag, immutable: bool) -> object:
    raise _NestedTagError(tag.tag)


def _tag_rejecter(tag: int) -> cbor2.SemanticDecoderCallback:
    def reject(value: object, immutable: bool) -> object:
        raise _NestedTagError(tag)

    return reject


# cbor2 turns these tags into Python objects itself (dates, bignums, regular expressions,
# MIME messages, shared references that can build cycles...). None belongs in a COSE header,
# and none of that parsing should run on unauthenticated input, so each is refused.
_CBOR2_SEMANTIC_TAGS: Final = (
    *(0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100),
    *(256, 258, 260, 261, 1004, 55799),
)
_REJECT_SEMANTIC_TAGS: Final = {tag: _tag_rejecter(tag) for tag in _CBOR2_SEMANTIC_TAGS}


# Every decode: no tag but refused ones, map keys checked in order, no indefinite length,
# no duplicate key, bounded nesting.
_DECODER_OPTIONS: Final[dict[str, Any]] = {
    "tag_hook": _reject_unknown_tag,
    "semantic_decoders": _REJECT_SEMANTIC_TAGS,
    "object_hook": _keys_in_order,
    "max_depth": _MAX_DEPTH,
    "allow_indefinite": False,
    "allow_duplicate_keys": False,
}


def _decode_cbor(data: bytes, offset: int, what: str) -> object:
    """Decode exactly one CBOR item from ``data[offset:]``; any failure is a DecodeError."""
    stream = io.BytesIO(data)
    stream.seek(offset)
    try:
        item = cbor2.CBORDecoder(stream, **_DECODER_OPTIONS).decode()
    # cbor2 is a C extension fed hostile bytes: whatever it raises (CBORDecodeError, but
    # also ValueError, OverflowError, RecursionError...) means "not a valid item".
    except Exception as exc:
        raise DecodeError(_FORMAT, f"invalid CBOR in {what}: {_cbor_failure(exc)}") from None
    if stream.tell() != len(data):
        raise DecodeError(_FORMAT, f"{len(data) - stream.tell()} trailing byte(s) after {what}")
    return item


def _cbor_failure(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _NestedTagError):
            return f"CBOR tag {seen.tag} is not allowed inside a COSE_Sign1"
        if isinstance(seen, _KeyOrderError):
            return "map keys not in deterministic order (RFC 8949 section 4.2.1)"
        seen = seen.__cause__ or seen.__context__
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _decode_protected(protected_bytes: bytes) -> HeaderMap:
    """The protected header map, from its exact bytes."""
    # The two headers sign1 writes are matched byte for byte, which gives exactly what the
    # general path would, about 2 us sooner on every token.
    if protected_bytes == _PROTECTED_ES256:
        return {HEADER_ALG: ALG_ES256}
    # (A zero-length kid, a2 01 26 04 40, is left to the general path.)
    if protected_bytes.startswith(_PROTECTED_ES256_KID) and len(protected_bytes) > 5:
        head = protected_bytes[4]
        if 0x40 <= head <= 0x57 and len(protected_bytes) == 5 + head - 0x40:
            return {HEADER_ALG: ALG_ES256, HEADER_KID: protected_bytes[5:]}
        if head == 0x58 and 24 <= protected_bytes[5] == len(protected_bytes) - 6:
            return {HEADER_ALG: ALG_ES256, HEADER_KID: protected_bytes[6:]}
    if protected_bytes.startswith(_PROTECTED_SM2_KID) and len(protected_bytes) > 9:
        head = protected_bytes[8]
        if 0x40 <= head <= 0x57 and len(protected_bytes) == 9 + head - 0x40:
            return {HEADER_ALG: ALG_SM2SM3, HEADER_KID: protected_bytes[9:]}
    if protected_bytes == _PROTECTED_SM2:
        return {HEADER_ALG: ALG_SM2SM3}
    return _decode_protected_cbor(protected_bytes)


def _decode_protected_cbor(protected_bytes: bytes) -> HeaderMap:
    # RFC 9052 section 3: an empty protected header is sent as a zero-length bstr.
    if not protected_bytes:
        return {}
    header = _decode_cbor(protected_bytes, 0, "protected header")
    if not isinstance(header, Mapping):
        raise DecodeError(_FORMAT, f"protected header must encode a map, got {_cbor_type(header)}")
    result = _header_map(header, "protected")
    _require_deterministic(header, protected_bytes, "protected header")
    return result


def _header_map(header: Mapping[object, object], bucket: str) -> HeaderMap:
    """Copy a decoded header map, checking its labels and the common parameters' types."""
    result: HeaderMap = {}
    for label, value in header.items():
        # bool is an int subclass (and True == 1), so test the exact type.
        if type(label) is not int and type(label) is not str:
            raise DecodeError(_FORMAT, f"{bucket} header label {_cbor_type(label)} is not int/tstr")
        result[label] = value
    _check_parameter_types(result, bucket)
    return result


def _check_parameter_types(header: HeaderMap, bucket: str) -> None:
    """Types of the RFC 9052 section 3.1 parameters we read (and content type)."""
    alg = header.get(HEADER_ALG)
    if alg is not None and type(alg) is not int and type(alg) is not str:
        raise DecodeError(_FORMAT, f"{bucket} alg must be int or tstr, got {_cbor_type(alg)}")
    if HEADER_CRIT in header:
        critical = header[HEADER_CRIT]
        if (
            not isinstance(critical, list | tuple)
            or not critical
            or any(type(label) is not int and type(label) is not str for label in critical)
        ):
            raise DecodeError(_FORMAT, f"{bucket} crit must be a non-empty array of labels")
    if HEADER_CONTENT_TYPE in header:
        content_type = header[HEADER_CONTENT_TYPE]
        if not (type(content_type) is int and content_type >= 0) and type(content_type) is not str:
            raise DecodeError(_FORMAT, f"{bucket} content type must be uint or tstr")
    if HEADER_KID in header and not isinstance(header[HEADER_KID], bytes):
        raise DecodeError(
            _FORMAT, f"{bucket} kid must be a bstr, got {_cbor_type(header[HEADER_KID])}"
        )


_CBOR_TYPE_NAMES: Final[dict[type, str]] = {
    bytes: "bstr",
    str: "tstr",
    int: "int",
    bool: "bool",
    float: "float",
    list: "array",
    tuple: "array",
    type(None): "nil",
}


def _cbor_type(value: object) -> str:
    """A CBOR-ish name for a decoded value's type, for error reasons."""
    if isinstance(value, Mapping):
        return "map"
    return _CBOR_TYPE_NAMES.get(type(value), type(value).__name__)


@functools.cache
def _is_ec_public_key_class(cls: type) -> bool:
    # isinstance against the ABC costs ~0.4 us per call; the answer depends on the class
    # alone, of which there are one or two, so it is remembered per class.
    return issubclass(cls, ec.EllipticCurvePublicKey)


def _key_name(key: object) -> str:
    curve = getattr(key, "curve", None)
    return f"{type(key).__name__} {getattr(curve, 'name', '')}".strip()
