"""Card personalisation: blank card -> chip key generated on the card -> card document
signed for that key -> written -> PIN and PUK set -> locked.

The signing step is a callable, :data:`CardDocumentSigner`: given the chip's public key it
returns the signed card document. At a real issuing counter that is the issuer, reached as
an authenticated terminal client; the issuer has no such endpoint yet, so today the only
implementation is :func:`local_document_signer` over a cardsvc ``Signer`` (a development
file key store, or tests).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, replace

from cardsvc.core.carddoc import CardDocument
from cardsvc.core.errors import CoreError
from cardsvc.core.keys import ES256, VerifyingKey
from cardsvc.core.signing import Signer
from reader_agent.card.constants import LifeCycle
from reader_agent.card.session import SscSession, pin_block
from reader_agent.errors import CardError, CardProtocolError

__all__ = [
    "CardDocumentSigner",
    "PersonalizationError",
    "PersonalizationResult",
    "local_document_signer",
    "personalize",
]

#: Given the chip public key, return the signed card document (compact JWS).
CardDocumentSigner = Callable[[VerifyingKey], str]


class PersonalizationError(CardError):
    """Personalisation cannot go on (card not blank, signer returned a wrong document)."""

    code = "personalization-error"


@dataclass(frozen=True, kw_only=True, slots=True)
class PersonalizationResult:
    chip_key: VerifyingKey
    document: str


def _document_chip_kid(document: str) -> str:
    """The kid of the ``cnf`` key inside an (unverified) card document."""
    try:
        payload = document.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return VerifyingKey.from_jwk(claims["cnf"]["jwk"]).kid
    except (IndexError, ValueError, KeyError, TypeError, CoreError) as exc:
        raise PersonalizationError(f"signer returned no usable card document: {exc}") from None


def personalize(
    session: SscSession,
    *,
    sign_document: CardDocumentSigner,
    pin: str,
    puk: str,
    chip_alg: str = ES256,
) -> PersonalizationResult:
    """Personalise the blank card behind ``session`` and lock it.

    Checks before anything irreversible: the card is blank, the PIN/PUK are well formed,
    and the signed document names the chip key the card just generated. The document is
    read back before LOCK, so a card is never locked with a torn write.
    """
    pin_block(pin)
    pin_block(puk, puk=True)
    if session.info.life_cycle != LifeCycle.BLANK:
        raise PersonalizationError("card is already personalised and locked")
    chip_key = session.generate_key(chip_alg)
    document = sign_document(chip_key)
    if _document_chip_kid(document) != chip_key.kid:
        raise PersonalizationError("signed card document names another chip key")
    session.write_document(document.encode("ascii"))
    session.set_pin(pin)
    session.set_puk(puk)
    session.info = session.select()  # refresh the document length before reading back
    if session.read_document() != document.encode("ascii"):
        raise CardProtocolError("card document read back differs from what was written")
    session.lock()
    return PersonalizationResult(chip_key=chip_key, document=document)


def local_document_signer(template: CardDocument, signer: Signer) -> CardDocumentSigner:
    """A :data:`CardDocumentSigner` that signs ``template`` with the chip key filled in,
    using a local ``card-document`` signer (development key store, tests)."""

    def sign(chip_key: VerifyingKey) -> str:
        return replace(template, chip_key=chip_key).sign(signer)

    return sign
