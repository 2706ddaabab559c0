"""An in-process issuer for agent tests: root, card-document and status-list keys, a
signed trust list, status list tokens, verifier bundles and card documents, all made with
cardsvc.core."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.bundle import encode_bundle
from cardsvc.core.carddoc import CardDocument
from cardsvc.core.identity import CardNumber, CitizenId, RegionCode
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.references import StatusReference
from cardsvc.core.signing import LocalSigner
from cardsvc.core.statuslist import StatusList, encode_status_list_jwt
from cardsvc.core.trustlist import TrustedKey, TrustList
from reader_agent.cache import AgentCache

ISSUER = "https://issuer.test"
STATUS_URI = "https://issuer.test/v1/status-lists/0"
PIN = "123456"
PUK = "87654321"


def _signer() -> LocalSigner:
    return LocalSigner(ec.generate_private_key(ec.SECP256R1()))


@dataclass
class World:
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    root: LocalSigner = field(default_factory=_signer)
    documents: LocalSigner = field(default_factory=_signer)
    statuses: LocalSigner = field(default_factory=_signer)
    sequence: int = 1

    def trust_list(self, *, sequence: int | None = None) -> str:
        start = self.now - timedelta(days=1)
        end = self.now + timedelta(days=365)
        keys = tuple(
            TrustedKey(key=s.verifying_key(), purpose=p, not_before=start, not_after=end)
            for s, p in (
                (self.documents, KeyPurpose.CARD_DOCUMENT),
                (self.statuses, KeyPurpose.STATUS_LIST),
            )
        )
        return TrustList(
            issuer=ISSUER,
            sequence=self.sequence if sequence is None else sequence,
            issued_at=self.now - timedelta(minutes=1),
            expires_at=self.now + timedelta(days=7),
            keys=keys,
        ).sign(self.root)

    def status_list(
        self, statuses: dict[int, int] | None = None, *, age: timedelta = timedelta(0)
    ) -> str:
        lst = StatusList.new(1024, bits=2)
        for idx, value in (statuses or {}).items():
            lst.set(idx, value)
        iat = self.now - age
        return encode_status_list_jwt(
            lst,
            sub=STATUS_URI,
            iat=iat,
            exp=iat + timedelta(days=7),
            ttl=3600,
            signer=self.statuses,
        )

    def template(self, *, idx: int = 7, card_number: str = "A12345678") -> CardDocument:
        return CardDocument(
            issuer=ISSUER,
            card_number=CardNumber.parse(card_number),
            citizen_id=CitizenId.parse("11010519491231002X"),
            name="张三",
            sex=CitizenId.parse("11010519491231002X").sex,
            birth_date=date(1949, 12, 31),
            region=RegionCode.parse("110105"),
            issue_date=date(2024, 1, 1),
            expiry_date=date(2034, 1, 1),
            chip_key=_signer().verifying_key(),  # replaced by the card's key
            status=StatusReference(idx=idx, uri=STATUS_URI),
            issued_at=self.now - timedelta(hours=1),
        )

    def bundle(
        self, statuses: dict[int, int] | None = None, *, version: int = 1,
        age: timedelta = timedelta(0),
    ) -> str:  # fmt: skip
        """A full verifier bundle: the trust list and the one status list."""
        issued = self.now - age
        return encode_bundle(
            issuer=ISSUER, version=version, issued_at=issued,
            expires_at=issued + timedelta(days=7), base=None, trust_list=self.trust_list(),
            status_lists={STATUS_URI: self.status_list(statuses, age=age)},
            signer=self.statuses,
        )  # fmt: skip

    def cache(self, directory: Path, *, statuses: dict[int, int] | None = None) -> AgentCache:
        cache = AgentCache(directory, clock=lambda: self.now)
        cache.pin_root(self.root.verifying_key())
        cache.install(self.bundle(statuses), now=self.now)
        return cache


@contextmanager
def emulator_process(slot: int, state: Path, *options: str) -> Iterator[Path]:
    """`reader-agent emulate --slot N [options]` as a subprocess, inserted until the block
    ends."""
    from reader_agent import pcsc

    reader = f"Virtual PCD 00 {slot:02d}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reader_agent",
            "emulate",
            "--slot",
            str(slot),
            "--state",
            str(state),
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        pcsc.wait_for_card(reader, timeout=15.0)
        yield state
    finally:
        process.terminate()
        process.wait(10)
        pcsc.wait_for_removal(reader, timeout=10.0)
