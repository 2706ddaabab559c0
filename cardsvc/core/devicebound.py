"""Device-bound offline QR tokens (``SSC2:``): the phone signs its credential into a time slot.

For a phone and a verifier that are both offline. The phone cannot ask the issuer for a
fresh token, so it presents its issuer-signed compact credential
(:mod:`cardsvc.core.credential`) wrapped in its own signature, made with the device key
bound at activation (never leaves the phone), over the current 30-second time slot and a
counter. A copied QR code is useless after its slot; a copied credential is useless
without the device key.

Wire form: ``SSC2:`` + base45 of an untagged ES256 COSE_Sign1 signed by the device key::

    protected   {1: -7, 4: device hint}   # hint: bytes 1-4 of the compressed device point
    payload     [credential (bstr), slot (uint), counter (uint), purpose (uint)]

``slot`` is ``floor(unix time / 30)``; ``counter`` is the wallet's own number, so two codes
shown in one slot differ. The device hint only tells "another phone signed this"
(``device-mismatch``) from "a bad signature" (``device-signature``); the signature
decides.

:func:`verify_device_bound` checks, in order: size and prefix, base45, the wrapper's
COSE_Sign1 and payload structure, the credential (``key-unknown``, ``key-purpose``,
``key-window``, ``signature``, ``claims``, ``expired``), the device hint
(``device-mismatch``), the device signature with the key *inside the credential*
(``device-signature``), the purpose (``purpose``) and the slot against the clock, at most
one slot apart (``slot``). Replay of (e-card, slot, counter) and the e-card's status are
the caller's checks (state: a seen-set, a status list): :class:`~cardsvc.core.verifier.
OfflineVerifier` does both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core import cose
from cardsvc.core.base45 import b45decode, b45encode
from cardsvc.core.credential import (
    CompactCredential,
    compressed_point,
    disclosed_claims,
    verify_compact_credential,
)
from cardsvc.core.errors import DecodeError, InputTooLargeError, VerificationError
from cardsvc.core.keys import b64url_encode
from cardsvc.core.qrtoken import MAX_QR_TEXT, Purpose
from cardsvc.core.references import StatusReference
from cardsvc.core.signing import LocalSigner, Signer
from cardsvc.core.trustlist import TrustList

__all__ = [
    "MAX_SKEW_SLOTS",
    "SCHEME_PREFIX",
    "SLOT_SECONDS",
    "DeviceBoundToken",
    "present",
    "slot_of",
    "verify_device_bound",
]

SCHEME_PREFIX: Final = "SSC2:"
SLOT_SECONDS: Final = 30
#: A verifier accepts the current slot and at most this many either side (clock skew).
MAX_SKEW_SLOTS: Final = 1
MAX_COUNTER: Final = 2**32 - 1
MAX_SLOT: Final = 2**32 - 1
HINT_BYTES: Final = 4
_FORMAT = "device-bound token"
_PURPOSES: Final = {int(p): p for p in Purpose}


def slot_of(now: datetime) -> int:
    """The 30-second time slot ``now`` falls in: ``floor(unix time / 30)``."""
    return int(now.timestamp()) // SLOT_SECONDS


def device_hint(point: bytes) -> bytes:
    """Bytes 1-4 of a compressed device point (the start of x): names, never proves."""
    return point[1 : 1 + HINT_BYTES]


@dataclass(frozen=True, kw_only=True)
class DeviceBoundToken:
    """A verified device-bound presentation: the credential, its slot and counter."""

    credential: CompactCredential
    slot: int
    counter: int

    @property
    def purpose(self) -> Purpose:
        return self.credential.purpose

    @property
    def replay_key(self) -> bytes:
        """(e-card, slot, counter): what a verifier remembers to refuse a second showing."""
        return self.credential.ecard_ref + self.slot.to_bytes(4) + self.counter.to_bytes(4)

    @property
    def valid_until(self) -> datetime:
        """When the last verifier allowing one slot of skew stops accepting this code."""
        end = (self.slot + 1 + MAX_SKEW_SLOTS) * SLOT_SECONDS
        return min(datetime.fromtimestamp(end, UTC), self.credential.expires_at)

    def to_json(self, *, status_base_uri: str) -> dict[str, Any]:
        """The JSON view (schemas/device-bound-token.schema.json)."""
        cred = self.credential
        status = StatusReference(idx=cred.status_idx, uri=f"{status_base_uri}/{cred.status_shard}")
        return {
            "iss": cred.issuer,
            "purpose": cred.purpose.name.lower(),
            "ecard": b64url_encode(cred.ecard_ref),
            "device_kid": cred.device_key.kid,
            "exp": int(cred.expires_at.timestamp()),
            "slot": self.slot,
            "counter": self.counter,
            "status": status.to_json(),
            "attributes": disclosed_claims(cred.attributes),
        }


def present(
    credential: bytes,
    device: Signer | ec.EllipticCurvePrivateKey,
    *,
    purpose: Purpose,
    now: datetime,
    counter: int,
) -> str:
    """The wallet's side: wrap ``credential`` for the slot of ``now``; returns the QR text.

    ``device`` is the device key bound to the credential (a signer, such as one backed by
    the phone's secure element, or the private key). Raises :class:`ValueError` for a
    credential of another purpose or bound to another key, or a counter out of range.
    """
    signer = LocalSigner(device) if isinstance(device, ec.EllipticCurvePrivateKey) else device
    if isinstance(counter, bool) or not 0 <= counter <= MAX_COUNTER:
        raise ValueError(f"counter must be 0..{MAX_COUNTER}")
    # Read (not verify) the wallet's own credential, to catch a wallet bug before a gate does.
    claims = cose.decode_cbor(cose.decode_sign1(credential).payload, what="credential claims")
    if not isinstance(claims, dict) or claims.get(1) != int(purpose) or 5 not in claims:
        raise ValueError(f"this credential is not a {purpose.name.lower()} credential")
    point = compressed_point(signer.verifying_key())
    if claims[5] != point:
        raise ValueError("this credential is bound to another device key")
    payload = cose.encode_cbor([credential, slot_of(now), counter, int(purpose)])
    message = cose.sign1(payload, signer, kid=device_hint(point), tagged=False)
    return SCHEME_PREFIX + b45encode(message)


def _parse(text: object) -> tuple[cose.Sign1Message, bytes, int, int, Purpose]:
    """Size, prefix, base45, COSE_Sign1 and the payload array; all before any signature."""
    if not isinstance(text, str):
        raise DecodeError(_FORMAT, "QR text must be a string")
    if len(text) > MAX_QR_TEXT:
        raise InputTooLargeError(_FORMAT, len(text), MAX_QR_TEXT)
    if not text.startswith(SCHEME_PREFIX):
        raise DecodeError(_FORMAT, f"not a {SCHEME_PREFIX} token")
    wrapper = cose.decode_sign1(b45decode(text[len(SCHEME_PREFIX) :]))
    # The device key is inside the payload, so the payload is read before its signature
    # is checked: under the same CBOR limits as the envelope, and typed strictly.
    body = cose.decode_cbor(wrapper.payload, what="device-bound payload")
    if not isinstance(body, list | tuple) or len(body) != 4:
        raise DecodeError(_FORMAT, "payload must be [credential, slot, counter, purpose]")
    credential, slot, counter, purpose = body
    if type(credential) is not bytes:
        raise DecodeError(_FORMAT, "credential must be a byte string")
    if type(slot) is not int or not 0 <= slot <= MAX_SLOT:
        raise DecodeError(_FORMAT, f"slot must be an integer 0..{MAX_SLOT}")
    if type(counter) is not int or not 0 <= counter <= MAX_COUNTER:
        raise DecodeError(_FORMAT, f"counter must be an integer 0..{MAX_COUNTER}")
    if type(purpose) is not int or purpose not in _PURPOSES:
        raise DecodeError(_FORMAT, "purpose must be a purpose code 1-7")
    return wrapper, credential, slot, counter, _PURPOSES[purpose]


def verify_device_bound(
    text: str,
    *,
    trust_list: TrustList,
    now: datetime,
    leeway: timedelta,
    purpose: Purpose | None = None,
    skew_slots: int = MAX_SKEW_SLOTS,
) -> DeviceBoundToken:
    """Verify an ``SSC2:`` device-bound QR text; returns the presentation.

    ``trust_list`` is the :class:`~cardsvc.core.trustlist.TrustList` of the issuer's
    ``ecard`` keys; ``leeway`` applies to the credential's ``exp``; ``skew_slots`` (0 or
    1) is how many 30-second slots the phone's clock may be off. Raises
    :class:`VerificationError` naming the failed check (module docstring) or
    :class:`DecodeError` for malformed input. Replay and status are the caller's checks.
    """
    if isinstance(skew_slots, bool) or not 0 <= skew_slots <= MAX_SKEW_SLOTS:
        raise ValueError(f"skew_slots must be 0..{MAX_SKEW_SLOTS}")
    wrapper, raw_credential, slot, counter, wrapped_purpose = _parse(text)
    credential = verify_compact_credential(
        raw_credential, trust_list=trust_list, now=now, leeway=leeway
    )
    hint = wrapper.protected.get(cose.HEADER_KID)
    if hint != device_hint(credential.device_point):
        raise VerificationError(
            "device-mismatch", "signed by another device than the one the e-card is bound to"
        )
    try:
        cose.verify_sign1(wrapper, credential.device_public_key)
    except VerificationError as exc:
        if exc.check != "signature":
            raise
        raise VerificationError(
            "device-signature", "the device signature does not verify with the bound key"
        ) from None
    if wrapped_purpose is not credential.purpose:
        raise VerificationError(
            "purpose",
            f"wrapped for {wrapped_purpose.name.lower()}, "
            f"credential is for {credential.purpose.name.lower()}",
        )
    if purpose is not None and credential.purpose is not purpose:
        raise VerificationError(
            "purpose",
            f"token is for {credential.purpose.name.lower()}, not {purpose.name.lower()}",
        )
    current = slot_of(now)
    if abs(slot - current) > skew_slots:
        raise VerificationError(
            "slot", f"made for slot {slot}, now is slot {current} (at most {skew_slots} apart)"
        )
    return DeviceBoundToken(credential=credential, slot=slot, counter=counter)
