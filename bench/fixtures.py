"""The benchmarks' own issuer keys, trust list and sample signed content, made with
cardsvc.core alone (bench imports nothing of tests: a contract in pyproject.toml).

The sample QR tokens and card document have the sizes the format tests use, so the
figures (token length, QR version) are those of typical content.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.carddoc import CardDocument
from cardsvc.core.identity import CardNumber, CitizenId, RegionCode, Sex
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.qrtoken import Attribute, Purpose, QrToken
from cardsvc.core.references import StatusReference
from cardsvc.core.signing import LocalSigner
from cardsvc.core.trustlist import TrustedKey, TrustList

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ISSUER = "https://issuer.test"
STATUS_URI = f"{ISSUER}/v1/status-lists/7"
ID_NO = "11010519491231002X"

TYPICAL: dict[Purpose, dict[Attribute, Any]] = {
    Purpose.IDENTITY: {
        Attribute.NAME: "欧阳娜娜",
        Attribute.ID_NO: ID_NO,
        Attribute.PHOTO_REF: bytes(range(8)),
    },
    Purpose.BENEFIT: {Attribute.NAME: "欧阳娜娜", Attribute.ID_NO: ID_NO},
    Purpose.MEDICAL: {
        Attribute.NAME: "欧阳娜娜",
        Attribute.ID_NO: ID_NO,
        Attribute.INSURED_REGION: "110105",
    },
    Purpose.FEE: {Attribute.NAME: "欧阳娜娜", Attribute.ID_NO: ID_NO},
    Purpose.TRANSPORT: {Attribute.CONCESSION: 1, Attribute.CONCESSION_UNTIL: date(2030, 6, 30)},
    Purpose.TOURISM: {Attribute.CONCESSION: 1, Attribute.AGE_OVER: 60},
    Purpose.CULTURE: {Attribute.CONCESSION: 2, Attribute.AGE_OVER: 65},
}


def new_signer() -> LocalSigner:
    return LocalSigner(ec.generate_private_key(ec.SECP256R1()))


@dataclass(frozen=True)
class Issuer:
    """A root key, one signing key per purpose and the trust list over them, valid at NOW."""

    root: LocalSigner
    signers: dict[KeyPurpose, LocalSigner]
    trust_list: TrustList

    @classmethod
    def new(cls) -> Issuer:
        signers = {p: new_signer() for p in KeyPurpose if p is not KeyPurpose.ROOT}
        keys = tuple(
            TrustedKey(
                key=s.verifying_key(),
                purpose=p,
                not_before=NOW - timedelta(days=30),
                not_after=NOW + timedelta(days=3650),
            )
            for p, s in signers.items()
        )
        trust_list = TrustList(
            issuer=ISSUER,
            sequence=1,
            issued_at=NOW,
            expires_at=NOW + timedelta(days=7),
            keys=keys,
        )
        return cls(root=new_signer(), signers=signers, trust_list=trust_list)

    def signer(self, purpose: KeyPurpose) -> LocalSigner:
        return self.signers[purpose]


def qr_token(purpose: Purpose = Purpose.IDENTITY, **fields: Any) -> QrToken:
    """A QR token with the purpose's typical attributes, valid for 60 s from NOW."""
    values: dict[str, Any] = {
        "issuer": "cn-ssc",
        "purpose": purpose,
        "ecard_ref": b"\x01" * 8,
        "jti": secrets.token_bytes(8),
        "issued_at": NOW,
        "expires_at": NOW + timedelta(seconds=60),
        "status_shard": 3,
        "status_idx": 101_010,
        "attributes": TYPICAL[purpose],
    }
    return QrToken(**(values | fields))


def card_document() -> CardDocument:
    """A card document issued the day before NOW, its status at entry 4242 of STATUS_URI."""
    return CardDocument(
        issuer=ISSUER,
        card_number=CardNumber.parse("A12345678"),
        citizen_id=CitizenId.parse(ID_NO),
        name="张三",
        sex=Sex.FEMALE,
        birth_date=date(1949, 12, 31),
        region=RegionCode.parse("110105"),
        issue_date=date(2024, 3, 1),
        expiry_date=date(2034, 3, 1),
        chip_key=new_signer().verifying_key(),
        status=StatusReference(idx=4242, uri=STATUS_URI),
        issued_at=NOW - timedelta(days=1),
    )
