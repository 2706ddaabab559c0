"""What every harness shares: the atheris entry point and an issuer's keys valid at NOW.

A harness feeds fuzz input to a real decoder. The decoder's typed errors (``CoreError``
and its subclasses, the agent's ``AgentError``) are expected answers to hostile input;
any other exception escapes to atheris, which reports it as a crash with the input.

The signed formats refuse almost every input at the signature, so each harness also
signs the fuzz bytes with the issuer's real key (a payload the fuzzer chose, a valid
signature) to reach the parsers that run after verification.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import atheris
from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.keys import KeyPurpose, b64url_encode
from cardsvc.core.signing import LocalSigner, low_s
from cardsvc.core.trustlist import TrustedKey, TrustList

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LEEWAY = timedelta(seconds=30)
ISSUER = "https://issuer.test"


def new_signer() -> LocalSigner:
    return LocalSigner(ec.generate_private_key(ec.SECP256R1()))


ROOT = new_signer()
SIGNERS = {p: new_signer() for p in KeyPurpose if p is not KeyPurpose.ROOT}
TRUST_LIST = TrustList(
    issuer=ISSUER,
    sequence=1,
    issued_at=NOW - timedelta(hours=1),
    expires_at=NOW + timedelta(days=7),
    keys=tuple(
        TrustedKey(
            key=s.verifying_key(),
            purpose=p,
            not_before=NOW - timedelta(days=30),
            not_after=NOW + timedelta(days=3650),
        )
        for p, s in SIGNERS.items()
    ),
)
TRUST_LIST_JWS = TRUST_LIST.sign(ROOT)


def jws_over(payload: bytes, signer: LocalSigner, header: bytes) -> str:
    """A compact JWS over raw ``payload`` bytes (not necessarily JSON), validly signed."""
    signing_input = f"{b64url_encode(header)}.{b64url_encode(payload)}"
    signature = low_s(signer.sign(signing_input.encode("ascii")))
    return f"{signing_input}.{b64url_encode(signature)}"


def jws_header(typ: str, signer: LocalSigner) -> bytes:
    return f'{{"alg":"ES256","kid":"{signer.kid}","typ":"{typ}"}}'.encode()


def fuzz(one_input: Callable[[bytes], None], expected: tuple[type[BaseException], ...]) -> None:
    """Run ``one_input`` under atheris; exceptions of ``expected`` types are answers."""

    def test_one(data: bytes) -> None:
        with contextlib.suppress(*expected):
            one_input(data)

    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


def json_value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> object:
    """A JSON value drawn from the fuzz input: libFuzzer rarely mutates its way to JSON."""
    kind = fdp.ConsumeIntInRange(0, 6 if depth < 3 else 3)
    if kind == 0:
        return fdp.ConsumeInt(8)
    if kind == 1:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    if kind == 2:
        return None
    if kind == 3:
        return fdp.ConsumeBool()
    if kind == 4:
        return b64url_encode(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)))
    if kind == 5:
        return [json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {
        fdp.ConsumeUnicodeNoSurrogates(8): json_value(fdp, depth + 1)
        for _ in range(fdp.ConsumeIntInRange(0, 3))
    }
