"""Moving keys from one backend to another (files to an HSM) without a gap.

A :class:`StackedBackend` puts the new backend in front of the previous one: new keys are
generated on the new backend; the previous backend's keys keep signing until their
successors activate, stay published until their ``verify_until``, and their schedules
(retirement) are written back to the previous backend. Nothing is copied: a private key
never moves between backends.
"""

from __future__ import annotations

from collections.abc import Sequence

from cardsvc.core.keys import ES256, KeyPurpose, VerifyingKey
from cardsvc.core.signing import Signer
from cardsvc.errors import KeyStoreError
from cardsvc.keystore.backend import KeyBackend
from cardsvc.keystore.records import KeyRecord


class StackedBackend:
    """``current`` takes new keys; ``previous`` holds the keys being retired."""

    def __init__(self, current: KeyBackend, previous: KeyBackend) -> None:
        self.current = current
        self.previous = previous

    def __repr__(self) -> str:
        return f"StackedBackend(current={self.current!r}, previous={self.previous!r})"

    def exists(self) -> bool:
        return self.previous.exists() or self.current.exists()

    def _previous_records(self) -> list[KeyRecord]:
        return self.previous.records() if self.previous.exists() else []

    def _current_records(self) -> list[KeyRecord]:
        return self.current.records() if self.current.exists() else []

    def records(self) -> list[KeyRecord]:
        previous = self._previous_records()
        kids = {r.kid for r in previous}
        current = [r for r in self._current_records() if r.kid not in kids]
        return sorted(previous + current, key=lambda r: r.created_at)

    def generate(self, purpose: KeyPurpose, *, alg: str = ES256) -> VerifyingKey:
        return self.current.generate(purpose, alg=alg)

    def commit(self, records: Sequence[KeyRecord], *, trust_list_sequence: int) -> None:
        before = self._previous_records()
        previous_kids = {r.kid for r in before}
        mine = [r for r in records if r.kid in previous_kids]
        if len(mine) != len(previous_kids):
            raise KeyStoreError(
                f"{self.previous!r}: a key of the previous backend cannot be dropped while "
                "the backends are stacked"
            )
        # The new backend first: a crash between leaves a new key without its
        # predecessor's retirement (the newer key signs; nothing is ever left without one).
        self.current.commit(
            [r for r in records if r.kid not in previous_kids],
            trust_list_sequence=trust_list_sequence,
        )
        # The previous backend is written only when a schedule of its own keys changes
        # (the trust list counter lives on in the new one): once its keys are retired it
        # is read-only, and its private keys can be destroyed.
        if {r.kid: r.to_json() for r in mine} != {r.kid: r.to_json() for r in before}:
            self.previous.commit(mine, trust_list_sequence=self.previous.trust_list_sequence())

    def trust_list_sequence(self) -> int:
        return max(self.previous.trust_list_sequence(), self.current.trust_list_sequence())

    def signer(self, kid: str) -> Signer:
        if any(r.kid == kid for r in self._previous_records()):
            return self.previous.signer(kid)
        return self.current.signer(kid)

    def still_previous(self) -> list[KeyPurpose]:
        """The issuing purposes whose newest key is still on the previous backend."""
        newest: dict[KeyPurpose, KeyRecord] = {}
        for r in self.records():
            if r.purpose is not KeyPurpose.ROOT:
                newest[r.purpose] = r
        previous = {r.kid for r in self._previous_records()}
        return [p for p, r in newest.items() if r.kid in previous]
