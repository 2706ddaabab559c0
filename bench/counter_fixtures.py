"""A counter's offline cache as the reader agent keeps it, filled from the benchmarks' own
issuer (bench imports nothing of tests)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fixtures import ISSUER, NOW, STATUS_URI, Issuer

from cardsvc.core.bundle import encode_bundle
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.statuslist import StatusList, encode_status_list_jwt
from reader_agent.cache import AgentCache

PIN = "123456"
PUK = "87654321"


def counter_cache(issuer: Issuer, directory: Path) -> AgentCache:
    """The issuer's root pinned and its verifier bundle (the trust list and STATUS_URI,
    every card good) at NOW."""
    status_list = encode_status_list_jwt(
        StatusList.new(8192, bits=2),
        sub=STATUS_URI,
        iat=NOW,
        exp=NOW + timedelta(days=7),
        ttl=3600,
        signer=issuer.signer(KeyPurpose.STATUS_LIST),
    )
    bundle = encode_bundle(
        issuer=ISSUER, version=1, issued_at=NOW,
        expires_at=NOW + timedelta(days=7), base=None,
        trust_list=issuer.trust_list.sign(issuer.root), status_lists={STATUS_URI: status_list},
        signer=issuer.signer(KeyPurpose.STATUS_LIST),
    )  # fmt: skip
    cache = AgentCache(directory, clock=lambda: NOW)
    cache.pin_root(issuer.root.verifying_key())
    cache.install(bundle, now=NOW)
    return cache
