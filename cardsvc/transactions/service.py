"""The issuer side of counter transactions: nonces, terminal certificates, online
submission with every check, receipts, and a person's transactions.

Online flow (DESIGN.md "the issuer hands out the nonce, the terminal relays it to the
card"): ``challenge`` -> the card signs (nonce, data, counter) -> the terminal counter-signs
-> ``submit``. In one database transaction ``submit`` runs the record through the
acceptance pipeline (:mod:`cardsvc.transactions.acceptance`: it consumes the nonce, locks
the card, checks its counter is above every accepted one, consumes the entitlement, writes
the ledger row) and, through ``on_commit``, writes the idempotency record.

Receipts are signed with the **terminal-certificate** key under their own ``typ``
(``cardsvc-receipt+jwt``), so a receipt can never pass as a certificate or the reverse.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.auth.clients import Client, ClientKind
from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.keys import KeyPurpose, VerifyingKey
from cardsvc.core.transaction import (
    NONCE_LENGTH,
    SignedRecord,
    TerminalCertificate,
    TransactionData,
    issue_terminal_certificate,
    verify_terminal_certificate,
)
from cardsvc.db.models import Challenge, ClientRow, TransactionRow
from cardsvc.db.states import Arrival, TransactionState
from cardsvc.keystore.service import KeyService
from cardsvc.registry.db import rows_of_person, write_session
from cardsvc.transactions.acceptance import (
    AlreadyStored,
    Fork,
    Outcome,
    RecordAcceptance,
    Refused,
    Stored,
    Submission,
)
from cardsvc.transactions.errors import (
    ReceiptUnknownError,
    TransactionConflictError,
    TransactionError,
)

CHALLENGE_LIFETIME = timedelta(minutes=2)
CERTIFICATE_LIFETIME = timedelta(days=365)


@dataclass(frozen=True, kw_only=True)
class Accepted:
    """An accepted transaction and its receipt."""

    transaction_id: uuid.UUID
    data: TransactionData
    counter: int
    receipt: str
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "transaction_id": str(self.transaction_id),
            "state": TransactionState.ACCEPTED,
            "type": self.data.kind.value,
            "card_number": self.data.card,
            "card_counter": self.counter,
            "terminal_seq": self.data.seq,
            "amount_fen": self.data.amount_fen,
            "currency": self.data.currency,
            "entitlement_id": str(self.data.entitlement) if self.data.entitlement else None,
            "receipt": self.receipt,
        }


class TransactionService:
    def __init__(self, engine: Engine, keys: KeyService, *, issuer: str, leeway: timedelta) -> None:
        self._engine = engine
        self._keys = keys
        self._issuer = issuer
        self._leeway = leeway
        #: The pipeline every record goes through, online here or in a batch.
        self.acceptance = RecordAcceptance(keys, issuer=issuer)

    # -- terminal certificates ----------------------------------------------------------

    def certify(self, client: Client, *, now: datetime) -> str:
        """Certify a terminal's registered public key (it authenticated with it)."""
        if client.kind is not ClientKind.TERMINAL or not client.active:
            raise TransactionError("terminal", "only an active terminal client is certified")
        signer = self._keys.signer(KeyPurpose.TERMINAL_CERTIFICATE, now=now)
        return issue_terminal_certificate(
            signer,
            issuer=self._issuer,
            terminal_id=client.client_id,
            name=client.display_name,
            key=client.key,
            now=now,
            lifetime=CERTIFICATE_LIFETIME,
        )

    def verify_certificate(
        self, certificate: str, *, terminal: Client, now: datetime
    ) -> TerminalCertificate:
        """The terminal's certificate, checked and bound to its current registered key."""
        try:
            cert = verify_terminal_certificate(
                certificate,
                key_for=self._certificate_key(now),
                issuer=self._issuer,
                now=now,
                leeway=self._leeway,
            )
        except CoreError as exc:
            raise TransactionError("terminal-certificate", f"terminal certificate: {exc}") from None
        if cert.terminal_id != terminal.client_id or cert.key.kid != terminal.key.kid:
            raise TransactionError(
                "terminal-certificate", "the certificate is not this terminal's current key"
            )
        return cert

    def _certificate_key(self, now: datetime) -> Callable[[Mapping[str, Any]], VerifyingKey]:
        trusted = {
            k.key.kid: k
            for k in self._keys.trusted_keys(now=now)
            if k.purpose is KeyPurpose.TERMINAL_CERTIFICATE
        }

        def key_for(header: Mapping[str, Any]) -> VerifyingKey:
            found = trusted.get(str(header.get("kid")))
            if found is None:
                raise VerificationError("key-unknown", "not a terminal-certificate key of ours")
            return found.key

        return key_for

    # -- nonces -------------------------------------------------------------------------

    def challenge(self, terminal_id: str, *, now: datetime) -> tuple[bytes, datetime]:
        nonce = secrets.token_bytes(NONCE_LENGTH)
        expires = now + CHALLENGE_LIFETIME
        with write_session(self._engine) as session:
            session.add(
                Challenge(
                    nonce=nonce.hex(), terminal_id=terminal_id, created_at=now, expires_at=expires
                )
            )
        return nonce, expires

    # -- online submission --------------------------------------------------------------

    def submit(
        self,
        record: SignedRecord,
        *,
        certificate: str,
        terminal: Client,
        now: datetime,
        on_commit: Callable[[Session, Accepted], None] | None = None,
        clerk: str | None = None,
    ) -> Accepted:
        """Verify and record one online transaction; raises a typed error naming the check.

        The record goes through the one acceptance pipeline (:mod:`.acceptance`); a
        refusal raises inside the database transaction, so nothing of it stays (the
        nonce included).
        """
        cert = self.verify_certificate(certificate, terminal=terminal, now=now)
        submission = Submission(
            record=record,
            arrival=Arrival.ONLINE,
            terminal_id=terminal.client_id,
            terminal_key=cert.key,
            now=now,
            signer=self.acceptance.receipt_signer(now=now),
            clerk=clerk,
        )
        try:
            with write_session(self._engine) as session:
                accepted = _accepted(self.acceptance.accept(session, submission))
                if on_commit is not None:
                    on_commit(session, accepted)
                return accepted
        except IntegrityError:
            # A concurrent request took the same (terminal, seq), counter or entitlement.
            raise TransactionConflictError(
                "duplicate",
                "another transaction already holds this sequence, counter or entitlement",
            ) from None

    # -- views --------------------------------------------------------------------------

    def for_person(
        self, person_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[TransactionRow]:
        columns = (TransactionRow.person_id, TransactionRow.id)
        return rows_of_person(
            self._engine, TransactionRow, columns, person_id, after=after, limit=limit
        )

    def by_receipt_code(self, code: str) -> ReceiptCheck:
        """What the receipt with ``code`` says (canonical code: parse it first), or
        ReceiptUnknownError. Nothing personal: no card, person or entitlement."""
        with Session(self._engine) as session:
            rows = session.execute(
                select(TransactionRow, ClientRow.display_name)
                .join(ClientRow, ClientRow.client_id == TransactionRow.terminal_id, isouter=True)
                .where(TransactionRow.receipt_code == code)
                .limit(2)
            ).all()
        if len(rows) != 1:  # none, or (at 2^-60 odds) two: neither is this receipt
            raise ReceiptUnknownError("no receipt with this code (mistyped, or not yet synced)")
        row, terminal_name = rows[0]
        return ReceiptCheck(
            code=code, kind=row.kind.value, amount_fen=row.amount_fen, currency=row.currency,
            at=row.at, terminal_name=terminal_name or row.terminal_id,
            under_review=row.state is TransactionState.CONFLICT,
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ReceiptCheck:
    """A receipt as the issuer confirms it."""

    code: str
    kind: str
    amount_fen: int
    currency: str
    at: datetime
    terminal_name: str
    under_review: bool  # held for review at sync (a conflict): not paid


def _accepted(outcome: Outcome) -> Accepted:
    """An online outcome as its answer, or the error that refuses it."""
    if isinstance(outcome, Stored) and outcome.receipt is not None:
        return Accepted(
            transaction_id=outcome.transaction_id,
            data=outcome.data,
            counter=outcome.counter,
            receipt=outcome.receipt,
        )
    if isinstance(outcome, AlreadyStored) and outcome.receipt is not None:
        return Accepted(
            transaction_id=outcome.transaction_id,
            data=outcome.data,
            counter=outcome.counter,
            receipt=outcome.receipt,
            replayed=True,
        )
    if isinstance(outcome, Refused):
        if outcome.error is not None:
            raise outcome.error
        error = TransactionConflictError if outcome.conflict else TransactionError
        raise error(outcome.check, outcome.detail, **outcome.fields)
    # A fork, or the seq holds a record stored as a conflict (no receipt).
    seq = outcome.seq if isinstance(outcome, Fork) else outcome.data.seq
    raise TransactionConflictError(
        "terminal-seq", f"terminal sequence {seq} already holds another record"
    )
