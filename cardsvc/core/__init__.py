"""Verify what the issuer signs: trust lists, card documents, QR tokens, status lists.

Needs only ``cryptography``, ``pyjwt`` and ``cbor2``. Pin the issuer's root key once,
load its trust list, then verify::

    from cardsvc.core import TrustAnchor, VerifyingKey, verify_qr_token, Purpose

    anchor = TrustAnchor(VerifyingKey.from_jwk(root_jwk))
    trust_list = anchor.accept(trust_list_jws, now=now, leeway=timedelta(seconds=30))
    token = verify_qr_token(qr_text, trust_list=trust_list, now=now,
                            leeway=timedelta(seconds=5), purpose=Purpose.TRANSPORT)

Device-bound QR tokens (``SSC2:``), made by a phone that is offline too, verify with
:func:`verify_device_bound` (or through the same :class:`OfflineVerifier`).

A partner's gate keeps an :class:`OfflineVerifier` (pinned root, the newest good verifier
bundle) and gets a :class:`Verdict` per scan: valid, invalid, or status unknown.

Every failure raises a :class:`CoreError`; a :class:`VerificationError` names the failed
check in ``.check``.
"""

from cardsvc.core.carddoc import CardDocument, verify_card_document
from cardsvc.core.devicebound import verify_device_bound
from cardsvc.core.errors import (
    CoreError,
    DecodeError,
    InputTooLargeError,
    InvalidIdentityError,
    StatusListError,
    VerificationError,
)
from cardsvc.core.identity import CardNumber, CitizenId, Fen, RegionCode, Sex
from cardsvc.core.keys import KeyPurpose, VerifyingKey
from cardsvc.core.qrtoken import Attribute, Purpose, QrToken, verify_qr_token
from cardsvc.core.references import StatusReference
from cardsvc.core.statuslist import (
    Status,
    StatusList,
    StatusListToken,
    verify_status_list_token,
)
from cardsvc.core.trustlist import TrustAnchor, TrustedKey, TrustList
from cardsvc.core.verifier import OfflineVerifier, Verdict

__all__ = [
    "Attribute",
    "CardDocument",
    "CardNumber",
    "CitizenId",
    "CoreError",
    "DecodeError",
    "Fen",
    "InputTooLargeError",
    "InvalidIdentityError",
    "KeyPurpose",
    "OfflineVerifier",
    "Purpose",
    "QrToken",
    "RegionCode",
    "Sex",
    "Status",
    "StatusList",
    "StatusListError",
    "StatusListToken",
    "StatusReference",
    "TrustAnchor",
    "TrustList",
    "TrustedKey",
    "Verdict",
    "VerificationError",
    "VerifyingKey",
    "verify_card_document",
    "verify_device_bound",
    "verify_qr_token",
    "verify_status_list_token",
]
