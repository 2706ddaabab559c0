"""Entitlements: create (operators, CSV import), list, stop after a death, consume once.

The database enforces the rules that must survive races between processes: one
entitlement per (person, benefit, period) (``uq_entitlements_once``), a collected
entitlement names its transaction, and at most one accepted transaction consumes an
entitlement (``uq_transactions_entitlement``).
"""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.audit.events import Actor
from cardsvc.core.errors import InvalidIdentityError
from cardsvc.core.identity import CitizenId
from cardsvc.db.models import Entitlement, Person
from cardsvc.db.states import EntitlementState
from cardsvc.ledger import audit
from cardsvc.ledger.errors import (
    DuplicateEntitlementError,
    EntitlementNotFoundError,
    EntitlementUnavailableError,
    InvalidEntitlementError,
)
from cardsvc.registry.db import read_session, rows_of_person, write_session
from cardsvc.registry.errors import HolderDeceasedError, PersonNotFoundError

CURRENCY = "CNY"
#: Largest single entitlement (10 million yuan): a typo guard, not a policy.
MAX_AMOUNT_FEN = 1_000_000_000
_BENEFIT = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_PERIOD = re.compile(r"(\d{4})-(\d{2})")


def parse_benefit(text: str) -> str:
    if not isinstance(text, str) or not _BENEFIT.fullmatch(text):
        raise InvalidEntitlementError(
            "benefit must be 1-32 of a-z, 0-9, _ and -, starting with a letter", field="benefit"
        )
    return text


def period_start(period: str) -> date:
    """First day of a ``YYYY-MM`` period; raises :class:`InvalidEntitlementError`."""
    match = _PERIOD.fullmatch(period) if isinstance(period, str) else None
    if match is None or not 1 <= int(match[2]) <= 12 or not 1900 <= int(match[1]) <= 9999:
        raise InvalidEntitlementError("period must be YYYY-MM", field="period")
    return date(int(match[1]), int(match[2]), 1)


def check_amount(amount_fen: int) -> int:
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise InvalidEntitlementError("amount_fen must be an integer", field="amount_fen")
    if not 1 <= amount_fen <= MAX_AMOUNT_FEN:
        raise InvalidEntitlementError(f"amount_fen must be 1..{MAX_AMOUNT_FEN}", field="amount_fen")
    return amount_fen


@dataclass(frozen=True, kw_only=True)
class NewEntitlement:
    """A checked request for an entitlement."""

    benefit: str
    period: str
    amount_fen: int

    def __post_init__(self) -> None:
        parse_benefit(self.benefit)
        period_start(self.period)
        check_amount(self.amount_fen)


@dataclass(kw_only=True)
class ImportResult:
    created: int = 0
    #: Rows already in the ledger with the same amount: a re-run of the same file.
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def _add(
    session: Session, person: Person, new: NewEntitlement, *, actor: Actor, now: datetime
) -> Entitlement:
    if person.deceased_on is not None and period_start(new.period) > person.deceased_on:
        raise HolderDeceasedError(
            f"the holder died on {person.deceased_on.isoformat()}: no entitlement after that",
            person_id=str(person.id),
        )
    existing = session.scalar(
        select(Entitlement).where(
            Entitlement.person_id == person.id,
            Entitlement.benefit == new.benefit,
            Entitlement.period == new.period,
        )
    )
    if existing is not None:
        raise DuplicateEntitlementError(str(existing.id))
    row = Entitlement(
        id=uuid.uuid4(),
        person_id=person.id,
        benefit=new.benefit,
        period=new.period,
        amount_fen=new.amount_fen,
        currency=CURRENCY,
        state=EntitlementState.OPEN,
        created_at=now,
        created_by=actor,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        audit.AuditEvent(
            kind=audit.AuditKind.ENTITLEMENT_CREATED,
            subject=f"entitlement:{row.id}",
            data={
                "person": str(person.id),
                "benefit": row.benefit,
                "period": row.period,
                "amount_fen": row.amount_fen,
            },
            row=row,
        ),
        actor=actor,
        now=now,
    )
    return row


def stop_after_death(
    session: Session, person_id: uuid.UUID, died_on: date, *, actor: Actor, now: datetime
) -> int:
    """Stop every open entitlement of ``person_id`` whose period starts after ``died_on``.

    Called by the registry inside the transaction that records the death. The month of
    death itself is still owed. Returns how many were stopped.
    """
    first_after = f"{died_on.year:04d}-{died_on.month:02d}"
    stopped = session.execute(
        update(Entitlement)
        .where(
            Entitlement.person_id == person_id,
            Entitlement.state == EntitlementState.OPEN,
            Entitlement.period > first_after,  # YYYY-MM sorts as text
        )
        .values(state=EntitlementState.STOPPED, stopped_reason="holder deceased", updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if stopped:
        audit.append(
            session,
            audit.AuditEvent(
                kind=audit.AuditKind.ENTITLEMENT_STOPPED,
                subject=f"person:{person_id}",
                data={"died_on": died_on.isoformat(), "stopped": stopped},
            ),
            actor=actor,
            now=now,
        )
    return int(stopped)


def consume(
    session: Session,
    entitlement_id: uuid.UUID,
    *,
    person_id: uuid.UUID,
    amount_fen: int,
    transaction_id: uuid.UUID,
    now: datetime,
) -> Entitlement:
    """Mark an open entitlement of ``person_id`` collected by ``transaction_id``.

    A conditional UPDATE: of two concurrent collections exactly one sees ``open``.
    """
    row = session.get(Entitlement, entitlement_id)
    if row is None or row.person_id != person_id:
        raise EntitlementNotFoundError(
            "no such entitlement for this card's holder", entitlement_id=str(entitlement_id)
        )
    if row.amount_fen != amount_fen:
        raise EntitlementUnavailableError(
            f"the entitlement is {row.amount_fen} fen, the transaction says {amount_fen}",
            entitlement_id=str(entitlement_id),
        )
    done = session.execute(
        update(Entitlement)
        .where(Entitlement.id == entitlement_id, Entitlement.state == EntitlementState.OPEN)
        .values(state=EntitlementState.COLLECTED, transaction_id=transaction_id, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if done != 1:
        session.refresh(row)
        raise EntitlementUnavailableError(
            f"the entitlement is {row.state}", entitlement_id=str(entitlement_id), state=row.state
        )
    session.refresh(row)
    return row


class LedgerService:
    """Entitlements over the issuer database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self, person_id: uuid.UUID, new: NewEntitlement, *, actor: Actor, now: datetime
    ) -> Entitlement:
        try:
            with write_session(self._engine) as session:
                person = session.get(Person, person_id)
                if person is None:
                    raise PersonNotFoundError("no such person", person_id=str(person_id))
                return _add(session, person, new, actor=actor, now=now)
        except IntegrityError:
            # A concurrent request created it between our check and our insert.
            with read_session(self._engine) as session:
                existing = session.scalar(
                    select(Entitlement.id).where(
                        Entitlement.person_id == person_id,
                        Entitlement.benefit == new.benefit,
                        Entitlement.period == new.period,
                    )
                )
            if existing is None:
                raise
            raise DuplicateEntitlementError(str(existing)) from None

    def get(self, entitlement_id: uuid.UUID) -> Entitlement:
        with read_session(self._engine) as session:
            row = session.get(Entitlement, entitlement_id)
        if row is None:
            raise EntitlementNotFoundError(
                "no such entitlement", entitlement_id=str(entitlement_id)
            )
        return row

    def list(
        self, person_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
    ) -> Sequence[Entitlement]:
        columns = (Entitlement.person_id, Entitlement.id)
        return rows_of_person(
            self._engine, Entitlement, columns, person_id, after=after, limit=limit
        )

    def import_rows(
        self, rows: Iterable[tuple[int, dict[str, str]]], *, actor: Actor, now: datetime
    ) -> ImportResult:
        """Import ``(line, row)`` pairs with columns citizen_id, benefit, period, amount_fen.

        Each row commits on its own: a bad row is rejected with its reason and the rest go
        in. Re-importing the same file creates nothing new (rows count as unchanged).
        """
        result = ImportResult()
        for line, row in rows:
            try:
                citizen_id = CitizenId.parse((row.get("citizen_id") or "").strip())
                amount_text = (row.get("amount_fen") or "").strip()
                if not amount_text.isdigit() or not amount_text.isascii():
                    raise InvalidEntitlementError("amount_fen must be a whole number of fen")
                new = NewEntitlement(
                    benefit=(row.get("benefit") or "").strip(),
                    period=(row.get("period") or "").strip(),
                    amount_fen=int(amount_text),
                )
                with write_session(self._engine) as session:
                    person = session.scalar(
                        select(Person).where(Person.citizen_id == str(citizen_id))
                    )
                    if person is None:
                        raise PersonNotFoundError("no person with this citizen ID number")
                    existing = session.scalar(
                        select(Entitlement).where(
                            Entitlement.person_id == person.id,
                            Entitlement.benefit == new.benefit,
                            Entitlement.period == new.period,
                        )
                    )
                    if existing is not None:
                        if existing.amount_fen != new.amount_fen:
                            raise DuplicateEntitlementError(str(existing.id))
                        result.unchanged += 1
                        continue
                    _add(session, person, new, actor=actor, now=now)
                result.created += 1
            except InvalidIdentityError as exc:
                result.rejected.append((line, f"citizen_id: {exc.detail}"))
            except (
                InvalidEntitlementError,
                DuplicateEntitlementError,
                PersonNotFoundError,
                HolderDeceasedError,
            ) as exc:
                result.rejected.append((line, exc.detail))
            except IntegrityError:
                result.rejected.append((line, "a concurrent import created this entitlement"))
        return result

    def import_csv(self, path: Path, *, actor: Actor, now: datetime) -> ImportResult:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = {"citizen_id", "benefit", "period", "amount_fen"} - set(
                reader.fieldnames or ()
            )
            if missing:
                raise InvalidEntitlementError(
                    f"{path}: missing columns {', '.join(sorted(missing))}"
                )
            return self.import_rows(
                ((reader.line_num, row) for row in reader), actor=actor, now=now
            )
