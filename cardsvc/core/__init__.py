"""Verify what the issuer signs: trust lists, card documents, QR tokens, status lists.

Needs only ``cryptography``, ``pyjwt`` and ``cbor2``; keys of the SM2-with-SM3 suite
(:class:`Sm2PublicKey`, ``alg`` SM2SM3) also need the extra ``cardsvc[sm]``, without which
they raise :class:`AlgorithmUnavailableError`. Pin the issuer's root key once,
load its trust list, then verify::

    from cardsvc.core import TrustAnchor, VerifyingKey, verify_qr_token, Purpose

    anchor = TrustAnchor(VerifyingKey.from_jwk(root_jwk))
    trust_list = anchor.accept(trust_list_jws, now=now, leeway=timedelta(seconds=30))
    token = verify_qr_token(qr_text, trust_list=trust_list, now=now,
                            leeway=timedelta(seconds=5), purpose=Purpose.TRANSPORT)

Device-bound QR tokens (``SSC2:``), made by a phone that is offline too, verify with
:func:`verify_device_bound` (or through the same :class:`OfflineVerifier`).

A partner's gate keeps an :class:`OfflineVerifier` (pinned root, the newest good verifier
bundle, a :class:`Bundle`) and gets a :class:`Verdict` per scan, whose :class:`Outcome` is
valid, invalid, or status unknown. A :class:`BundleFetcher` keeps it current: one
:class:`Refresh` per call (a delta on the held bundle, the ETag, the held bundle kept when
the issuer is away).

Terminals sign what they do with a :class:`Signer`: a :class:`SignedRecord` over
:class:`TransactionData` of a :class:`Kind` for transactions, and
:func:`make_client_assertion` to authenticate to the issuer.

Every failure raises a :class:`CoreError`; a :class:`VerificationError` names the failed
check in ``.check``.
"""

from cardsvc.core.assertion import make_client_assertion
from cardsvc.core.bundle import Bundle
from cardsvc.core.carddoc import CardDocument, verify_card_document
from cardsvc.core.credential import CompactCredential
from cardsvc.core.devicebound import DeviceBoundToken, verify_device_bound
from cardsvc.core.errors import (
    CoreError,
    DecodeError,
    InputTooLargeError,
    InvalidIdentityError,
    StatusListError,
    VerificationError,
)
from cardsvc.core.fetch import BundleFetcher, Refresh, RefreshOutcome
from cardsvc.core.identity import CardNumber, CitizenId, Fen, RegionCode, Sex
from cardsvc.core.keys import KeyPurpose, VerifyingKey
from cardsvc.core.qrtoken import Attribute, Purpose, QrToken, verify_qr_token
from cardsvc.core.references import StatusReference
from cardsvc.core.signing import LocalSigner, Signer
from cardsvc.core.sm2 import AlgorithmUnavailableError, Sm2PublicKey
from cardsvc.core.statuslist import (
    Status,
    StatusList,
    StatusListToken,
    verify_status_list_token,
)
from cardsvc.core.transaction import Kind, SignedRecord, TransactionData
from cardsvc.core.trustlist import TrustAnchor, TrustedKey, TrustList
from cardsvc.core.verifier import OfflineVerifier, Outcome, Verdict

__all__ = [
    "AlgorithmUnavailableError",
    "Attribute",
    "Bundle",
    "BundleFetcher",
    "CardDocument",
    "CardNumber",
    "CitizenId",
    "CompactCredential",
    "CoreError",
    "DecodeError",
    "DeviceBoundToken",
    "Fen",
    "InputTooLargeError",
    "InvalidIdentityError",
    "KeyPurpose",
    "Kind",
    "LocalSigner",
    "OfflineVerifier",
    "Outcome",
    "Purpose",
    "QrToken",
    "Refresh",
    "RefreshOutcome",
    "RegionCode",
    "Sex",
    "SignedRecord",
    "Signer",
    "Sm2PublicKey",
    "Status",
    "StatusList",
    "StatusListError",
    "StatusListToken",
    "StatusReference",
    "TransactionData",
    "TrustAnchor",
    "TrustList",
    "TrustedKey",
    "Verdict",
    "VerificationError",
    "VerifyingKey",
    "make_client_assertion",
    "verify_card_document",
    "verify_device_bound",
    "verify_qr_token",
    "verify_status_list_token",
]
