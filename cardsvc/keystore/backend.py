"""The storage interface a key store backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cardsvc.core.keys import ES256, KeyPurpose, VerifyingKey
from cardsvc.core.signing import Signer
from cardsvc.keystore.records import KeyRecord


class KeyBackend(Protocol):
    """Generates and holds private keys; keeps the metadata of every key.

    A file backend keeps encrypted PKCS#8 files; an HSM backend keeps non-extractable
    keys. Either way private key material never leaves the backend except as signatures.
    """

    def exists(self) -> bool:
        """Whether a key store has been initialised here."""
        ...

    def records(self) -> list[KeyRecord]:
        """Metadata of every key, oldest first. Needs no passphrase."""
        ...

    def generate(self, purpose: KeyPurpose, *, alg: str = ES256) -> VerifyingKey:
        """Create an ``alg`` key pair, store its private half durably, return the public half.

        A backend that cannot make ``alg`` keys (SoftHSM2 has no SM2) raises
        :class:`~cardsvc.errors.KeyStoreError`.

        The key is not part of the store until :meth:`commit` lists it.
        """
        ...

    def commit(self, records: Sequence[KeyRecord], *, trust_list_sequence: int) -> None:
        """Atomically replace all metadata (new keys, retirements, the trust list counter)."""
        ...

    def trust_list_sequence(self) -> int:
        """The sequence number of the last trust list exported (-1 if none)."""
        ...

    def signer(self, kid: str) -> Signer:
        """A signer for one key (decrypting or opening it as the backend requires)."""
        ...
