"""The offline gate both verify benchmarks measure: a verifier holding a bundle with one
131,072-entry status list shard at 1% revoked (entries 1, 101, 201, ... are INVALID)."""

from __future__ import annotations

from datetime import timedelta

from fixtures import NOW, Issuer

from cardsvc.core.bundle import encode_bundle
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.statuslist import Status, StatusList, encode_status_list_jwt
from cardsvc.core.verifier import OfflineVerifier

BASE = "https://issuer.test/v1/status-lists"
SHARD = 3


def gate(issuer: Issuer) -> OfflineVerifier:
    """An in-memory verifier that has accepted the bundle (shard ``SHARD``) at ``NOW``."""
    lst = StatusList.new(131_072, 2)
    for i in range(0, 131_072, 100):  # 1% revoked
        lst.set(i + 1, Status.INVALID)
    shard = encode_status_list_jwt(
        lst, sub=f"{BASE}/{SHARD}", iat=NOW, exp=NOW + timedelta(days=1), ttl=3600,
        signer=issuer.signer(KeyPurpose.STATUS_LIST),
    )  # fmt: skip
    bundle = encode_bundle(
        issuer="https://issuer.test", version=1, issued_at=NOW,
        expires_at=NOW + timedelta(days=1), base=None,
        trust_list=issuer.trust_list.sign(issuer.root), status_lists={f"{BASE}/{SHARD}": shard},
        signer=issuer.signer(KeyPurpose.STATUS_LIST),
    )  # fmt: skip
    verifier = OfflineVerifier(issuer.root.verifying_key())
    verifier.update(bundle, now=NOW)
    return verifier
