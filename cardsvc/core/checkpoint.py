"""Signed audit checkpoints: the issuer's audit log tree size and root hash at a time.

A checkpoint is a compact JWS, ``typ`` ``audit-checkpoint+jwt``, signed by an
``audit-checkpoint`` key of the trust list, with claims ``iss``, ``iat``, ``size`` and
``root`` (the RFC 6962 root hash, base64url). Together with
:func:`cardsvc.core.merkle.verify_inclusion` a partner checks that a receipt's leaf is in
the log the issuer signed::

    cp = verify_checkpoint(token, trust_list=trust_list, now=now, leeway=leeway)
    verify_inclusion(leaf_hash, index=index, size=cp.size, proof=proof, root=cp.root)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cardsvc.core.errors import DecodeError, VerificationError
from cardsvc.core.jws import check_times, verify_jws
from cardsvc.core.keys import KeyPurpose, VerifyingKey, b64url_decode, b64url_encode
from cardsvc.core.merkle import HASH_SIZE
from cardsvc.core.signing import Signer, sign_jws
from cardsvc.core.trustlist import TrustList

CHECKPOINT_TYP = "audit-checkpoint+jwt"
MAX_CHECKPOINT_SIZE = 4096


@dataclass(frozen=True, kw_only=True)
class AuditCheckpoint:
    """A verified checkpoint: ``size`` leaves with root hash ``root``, signed at ``issued_at``."""

    issuer: str
    size: int
    root: bytes
    issued_at: datetime
    kid: str

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise DecodeError("audit checkpoint", "size must be a non-negative integer")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise DecodeError("audit checkpoint", f"root must be {HASH_SIZE} bytes")

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], *, kid: str) -> AuditCheckpoint:
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise DecodeError("audit checkpoint", "iss must be a non-empty string")
        root = claims.get("root")
        if not isinstance(root, str):
            raise DecodeError("audit checkpoint", "root must be a base64url string")
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int):
            raise DecodeError("audit checkpoint", "iat must be an integer")
        return cls(
            issuer=issuer,
            size=claims.get("size"),  # type: ignore[arg-type]  # checked in __post_init__
            root=b64url_decode(root, what="audit checkpoint root"),
            issued_at=datetime.fromtimestamp(iat, tz=UTC),
            kid=kid,
        )


def sign_checkpoint(
    *, issuer: str, size: int, root: bytes, issued_at: datetime, signer: Signer
) -> str:
    """Sign a checkpoint with an ``audit-checkpoint`` key (times in whole seconds)."""
    if issued_at.utcoffset() is None:
        raise ValueError("issued_at must be timezone-aware")
    AuditCheckpoint(issuer=issuer, size=size, root=root, issued_at=issued_at, kid=signer.kid)
    claims = {
        "iss": issuer,
        "iat": int(issued_at.timestamp()),
        "size": size,
        "root": b64url_encode(root),
    }
    return sign_jws({"typ": CHECKPOINT_TYP}, claims, signer)


def decode_checkpoint(token: str, *, key: VerifyingKey) -> AuditCheckpoint:
    """Verify a checkpoint signed by ``key`` (no clock: old checkpoints stay verifiable)."""
    verified = verify_jws(
        token, typ=CHECKPOINT_TYP, key_for=lambda _h: key, max_size=MAX_CHECKPOINT_SIZE
    )
    return AuditCheckpoint.from_claims(verified.claims, kid=key.kid)


def verify_checkpoint(
    token: str, *, trust_list: TrustList, now: datetime, leeway: timedelta
) -> AuditCheckpoint:
    """Verify a checkpoint against ``trust_list``: the key must sign ``audit-checkpoint``
    and be in its window at ``now``; ``iat`` must not be in the future."""

    def key_for(header: Mapping[str, Any]) -> VerifyingKey:
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise VerificationError("key-unknown", "header has no kid")
        return trust_list.find(kid, KeyPurpose.AUDIT_CHECKPOINT, now=now).key

    verified = verify_jws(token, typ=CHECKPOINT_TYP, key_for=key_for, max_size=MAX_CHECKPOINT_SIZE)
    check_times(verified.claims, now=now, leeway=leeway, require=("iat",))
    return AuditCheckpoint.from_claims(verified.claims, kid=verified.key.kid)
