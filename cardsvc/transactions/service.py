"""The issuer side of counter transactions: nonces, terminal certificates, online
submission with every check, receipts, and a person's transactions.

Online flow (DESIGN.md "the issuer hands out the nonce, the terminal relays it to the
card"): ``challenge`` -> the card signs (nonce, data, counter) -> the terminal counter-signs
-> ``submit``. In one database transaction ``submit`` consumes the nonce, locks the card,
checks its counter is above every accepted one, consumes the entitlement (benefit), writes
the ledger row and (through ``on_commit``) the idempotency record.

Receipts are signed with the **terminal-certificate** key under their own ``typ``
(``cardsvc-receipt+jwt``), so a receipt can never pass as a certificate or the reverse.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.auth.clients import Client, ClientKind
from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.keys import KeyPurpose, VerifyingKey, b64url_encode
from cardsvc.core.transaction import (
    NONCE_LENGTH,
    Kind,
    SignedRecord,
    TerminalCertificate,
    TransactionData,
    issue_receipt,
    issue_terminal_certificate,
    verify_terminal_certificate,
)
from cardsvc.db.models import Card
from cardsvc.keystore.service import KeyService
from cardsvc.ledger import audit
from cardsvc.ledger.service import consume
from cardsvc.registry.db import rows_of_person, write_session
from cardsvc.transactions.errors import TransactionConflictError, TransactionError
from cardsvc.transactions.models import Challenge, TransactionRow

CHALLENGE_LIFETIME = timedelta(minutes=2)
#: An online record's own time may differ from the issuer's clock by this much.
ONLINE_CLOCK_WINDOW = timedelta(minutes=5)
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
            "state": "accepted",
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
    ) -> Accepted:
        """Verify and record one online transaction; raises a typed error naming the check."""
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
        try:
            data = record.transaction
        except CoreError as exc:
            raise TransactionError("data", str(exc)) from None
        if data.terminal != terminal.client_id:
            raise TransactionError("terminal", "the record names another terminal")
        if abs(data.time - now) > ONLINE_CLOCK_WINDOW:
            raise TransactionError("time", "the record's time is too far from the issuer's clock")
        transaction_id = uuid.uuid4()
        receipt_signer = self._keys.signer(KeyPurpose.TERMINAL_CERTIFICATE, now=now)
        try:
            with write_session(self._engine) as session:
                replay = self._existing(session, record, data)
                if replay is not None:
                    if on_commit is not None:
                        on_commit(session, replay)
                    return replay
                used = session.execute(
                    update(Challenge)
                    .where(
                        Challenge.nonce == record.nonce.hex(),
                        Challenge.terminal_id == terminal.client_id,
                        Challenge.used_at.is_(None),
                        Challenge.expires_at > now,
                    )
                    .values(used_at=now)
                ).rowcount  # type: ignore[attr-defined]
                if used != 1:
                    raise TransactionError(
                        "nonce", "the nonce was not issued to this terminal, expired or was used"
                    )
                card = session.scalar(
                    select(Card).where(Card.card_number == data.card).with_for_update()
                )
                if card is None or card.chip_jwk is None:
                    raise TransactionError("card", "no personalised card with this number")
                if card.state != "active" or card.expiry_date < _day(now):
                    raise TransactionError("card-status", f"the card is {card.state}")
                try:
                    record.verify(
                        chip_key=VerifyingKey.from_jwk(json.loads(card.chip_jwk)),
                        terminal_key=cert.key,
                    )
                except VerificationError as exc:
                    raise TransactionError(exc.check, exc.detail) from None
                highest = session.scalar(
                    select(func.max(TransactionRow.card_counter)).where(
                        TransactionRow.card_id == card.id, TransactionRow.state == "accepted"
                    )
                )
                if highest is not None and record.counter <= highest:
                    raise TransactionConflictError(
                        "counter",
                        f"card counter {record.counter} is not above {highest}: "
                        "a replay or a clone",
                        highest_counter=highest,
                    )
                if data.kind is Kind.BENEFIT:
                    assert data.entitlement is not None  # noqa: S101 - TransactionData checks
                    consume(
                        session,
                        data.entitlement,
                        person_id=card.person_id,
                        amount_fen=data.amount_fen,
                        transaction_id=transaction_id,
                        now=now,
                    )
                receipt = issue_receipt(
                    receipt_signer,
                    issuer=self._issuer,
                    transaction_id=transaction_id,
                    record=record,
                    data=data,
                    now=now,
                )
                row = _row(
                    transaction_id, record, data, card, mode="online", now=now, receipt=receipt
                )
                session.add(row)
                session.flush()
                audit.append(
                    session,
                    audit.AuditEvent(
                        kind=audit.AuditKind.transaction(data.kind.value),
                        subject=f"transaction:{transaction_id}",
                        data={"card": str(card.id), "counter": record.counter,
                              "amount_fen": data.amount_fen, "seq": data.seq,
                              "entitlement": str(data.entitlement) if data.entitlement else None},
                        row=row),
                    actor=audit.Actor(terminal.client_id),
                    now=now,
                )  # fmt: skip
                accepted = Accepted(
                    transaction_id=transaction_id,
                    data=data,
                    counter=record.counter,
                    receipt=receipt,
                )
                if on_commit is not None:
                    on_commit(session, accepted)
                return accepted
        except IntegrityError:
            # A concurrent request took the same (terminal, seq), counter or entitlement.
            raise TransactionConflictError(
                "duplicate",
                "another transaction already holds this sequence, counter or entitlement",
            ) from None

    def _existing(
        self, session: Session, record: SignedRecord, data: TransactionData
    ) -> Accepted | None:
        """The same record again (a retry): its receipt. Another record on that seq: 409."""
        row = session.scalar(
            select(TransactionRow).where(
                TransactionRow.terminal_id == data.terminal, TransactionRow.terminal_seq == data.seq
            )
        )
        if row is None:
            return None
        if row.card_signature != b64url_encode(record.card_signature) or row.receipt is None:
            raise TransactionConflictError(
                "terminal-seq", f"terminal sequence {data.seq} already holds another record"
            )
        return Accepted(
            transaction_id=row.id,
            data=data,
            counter=row.card_counter,
            receipt=row.receipt,
            replayed=True,
        )

    # -- views --------------------------------------------------------------------------

    def for_person(
        self, person_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[TransactionRow]:
        columns = (TransactionRow.person_id, TransactionRow.id)
        return rows_of_person(
            self._engine, TransactionRow, columns, person_id, after=after, limit=limit
        )


def _day(now: datetime) -> date:
    return now.date()


def _row(
    transaction_id: uuid.UUID,
    record: SignedRecord,
    data: TransactionData,
    card: Card,
    *,
    mode: str,
    now: datetime,
    receipt: str | None,
    state: str = "accepted",
    conflict: str | None = None,
) -> TransactionRow:
    return TransactionRow(
        id=transaction_id,
        kind=data.kind.value,
        mode=mode,
        state=state,
        conflict=conflict,
        card_id=card.id,
        person_id=card.person_id,
        terminal_id=data.terminal,
        terminal_seq=data.seq,
        card_counter=record.counter,
        amount_fen=data.amount_fen,
        currency=data.currency,
        entitlement_id=data.entitlement,
        reference=data.reference,
        at=data.time,
        received_at=now,
        nonce=record.nonce.hex(),
        data=b64url_encode(record.data),
        card_signature=b64url_encode(record.card_signature),
        terminal_signature=b64url_encode(record.terminal_signature),
        receipt=receipt,
    )
