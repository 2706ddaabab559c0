"""How long e-card codes, challenges, proofs, tokens and offline credentials live."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, kw_only=True)
class ECardPolicy:
    token_lifetime: timedelta
    offline_period: timedelta
    code_lifetime: timedelta
    code_attempts: int
    proof_max_age: timedelta
    challenge_max_age: timedelta = timedelta(minutes=2)
    #: Life of a compact credential for device-bound offline QR codes; the wallet renews
    #: it when online. Bounds how long an ``ecard`` key stays listed after its last use.
    offline_credential_lifetime: timedelta = timedelta(days=7)
