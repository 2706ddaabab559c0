"""Keys and a trust list for format tests, made fresh per session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.keys import KeyPurpose
from cardsvc.core.signing import LocalSigner
from cardsvc.core.trustlist import TrustedKey, TrustList

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def new_signer() -> LocalSigner:
    return LocalSigner(ec.generate_private_key(ec.SECP256R1()))


@dataclass(frozen=True)
class Issuer:
    root: LocalSigner
    signers: dict[KeyPurpose, LocalSigner]
    trust_list: TrustList

    def signer(self, purpose: KeyPurpose) -> LocalSigner:
        return self.signers[purpose]


def make_trust_list(
    signers: dict[KeyPurpose, LocalSigner], *, sequence: int = 1, now: datetime = NOW
) -> TrustList:
    return TrustList(
        issuer="https://issuer.test",
        sequence=sequence,
        issued_at=now,
        expires_at=now + timedelta(days=7),
        keys=tuple(
            TrustedKey(
                key=s.verifying_key(),
                purpose=p,
                not_before=now - timedelta(days=30),
                not_after=now + timedelta(days=3650),
            )
            for p, s in signers.items()
        ),
    )


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    signers = {p: new_signer() for p in KeyPurpose if p is not KeyPurpose.ROOT}
    return Issuer(root=new_signer(), signers=signers, trust_list=make_trust_list(signers))
