"""What the page shows, as frozen data with a JSON view: identity, check, receipt.

Identity shown to the clerk (a decision, also in the README): name, card number, sex,
birth date, region code, the card's issue and expiry dates, and the citizen ID number
masked to its first 6 and last 4 characters (``110105********002X``). The clerk needs to
match the person in front of them and the card; the full ID number is not needed for
that and would end up on screens and photos, so it never leaves the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cardsvc.core.carddoc import CardDocument
from cardsvc.core.receiptcode import format_receipt_code, receipt_code
from reader_agent.check import CheckResult, Outcome, Step, Verdict
from reader_agent.counter import CounterResult
from reader_agent.journal import JournalError, JournalRecord
from reader_agent.page.words import verdict_words
from wording import render

__all__ = ["Hall", "Identity", "Receipt", "check_view", "mask_citizen_id", "yuan"]


def mask_citizen_id(text: str) -> str:
    """First 6 (region) and last 4 characters; the rest as ``*``."""
    if len(text) <= 10:
        return "*" * len(text)
    return text[:6] + "*" * (len(text) - 10) + text[-4:]


def yuan(fen: int) -> str:
    """``350000`` -> ``"3,500.00"`` (integer arithmetic: fen never go through a float)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"


@dataclass(frozen=True, kw_only=True)
class Identity:
    name: str
    card_number: str
    sex: str
    birth_date: str
    region: str
    citizen_id_masked: str
    issue_date: str
    expiry_date: str

    @classmethod
    def of(cls, document: CardDocument) -> Identity:
        return cls(
            name=document.name,
            card_number=str(document.card_number),
            sex="female" if document.sex.value == "F" else "male",
            birth_date=document.birth_date.isoformat(),
            region=str(document.region),
            citizen_id_masked=mask_citizen_id(str(document.citizen_id)),
            issue_date=document.issue_date.isoformat(),
            expiry_date=document.expiry_date.isoformat(),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "card_number": self.card_number, "sex": self.sex,
            "birth_date": self.birth_date, "region": self.region,
            "citizen_id_masked": self.citizen_id_masked, "issue_date": self.issue_date,
            "expiry_date": self.expiry_date,
        }  # fmt: skip


def pin_passed(check: CheckResult) -> bool:
    return any(s.step is Step.PIN and s.outcome is Outcome.PASSED for s in check.steps)


_CARD_OK = frozenset({Verdict.GENUINE, Verdict.PIN_FAILED, Verdict.PIN_REFUSED})


def check_view(check: CheckResult, lang: str) -> dict[str, Any]:
    meaning, advice = (render(lang, m) for m in verdict_words(check.verdict))
    return {
        "verdict": check.verdict.value,
        "genuine": check.genuine,
        # The card itself passed (document, chip, status); only the PIN may be wanting.
        "card_ok": check.verdict in _CARD_OK,
        "meaning": meaning,
        "advice": advice,
        "steps": [
            {"step": s.step.value, "outcome": s.outcome.value, "reason": s.reason}
            for s in check.steps
        ],
        "pin_tries_left": check.pin_tries_left,
        "pin_verified": pin_passed(check),
        # How current the card status used was (online: at most 30 s; offline: shown).
        "status_age_seconds": (
            int(check.status_age.total_seconds()) if check.status_age is not None else None
        ),
        "status_as_of": check.status_as_of.isoformat() if check.status_as_of else None,
    }


@dataclass(frozen=True, kw_only=True)
class Hall:
    """The service hall this counter stands in, printed at the head of every receipt."""

    name: str = ""
    address: str = ""


@dataclass(frozen=True, kw_only=True)
class Receipt:
    """The printable receipt of one collection or payment, made from its journal record
    alone: the receipt right after the card signed, after a page reload and a reprint
    from the journal are the same (a reprint says it is one)."""

    kind: str  # benefit | fee
    mode: str  # online | offline
    state: str  # the journal's: accepted, signed (waiting to sync), ...
    seq: int
    counter: int
    amount_fen: int
    at: datetime  # the time the card signed (in the record)
    terminal: str
    card_number: str
    name: str
    entitlement: str | None
    reference: str | None
    transaction_id: str | None
    #: The benefit and period of the entitlement collected (as the issuer named them when
    #: the clerk listed them), so the receipt reads the same after a reload or a reprint.
    benefit: str | None = None
    period: str | None = None
    #: The clerk signed in when the card signed (operator client id and name).
    clerk_id: str | None = None
    clerk_name: str | None = None
    #: The verification code (cardsvc.core.receiptcode), checkable at the issuer once
    #: the record is there; None for a record the card never signed.
    code: str | None = None
    hall: Hall = Hall()
    #: The terminal's name as the counter is configured with it ("" : "this counter").
    terminal_name: str = ""
    reprint: bool = False

    @classmethod
    def of(cls, result: CounterResult, *, hall: Hall = Hall(), terminal_name: str = "") -> Receipt:
        return cls.from_record(result.record, hall=hall, terminal_name=terminal_name)

    @classmethod
    def from_record(cls, record: JournalRecord, *, hall: Hall = Hall(), terminal_name: str = "",
                    reprint: bool = False) -> Receipt:  # fmt: skip
        data = record.transaction
        answer = record.answer or {}
        note = record.note or {}
        try:
            code: str | None = format_receipt_code(receipt_code(record.signed_record()))
        except JournalError:
            code = None
        return cls(
            kind=data.kind.value, mode=record.mode, state=record.state.value, seq=record.seq,
            counter=record.counter or 0, amount_fen=data.amount_fen, at=data.time,
            terminal=data.terminal, terminal_name=terminal_name, card_number=data.card,
            name=_opt(note.get("holder")) or "",
            entitlement=str(data.entitlement) if data.entitlement else None,
            reference=data.reference,
            transaction_id=(
                str(answer["transaction_id"]) if answer.get("transaction_id") else None
            ),
            benefit=_opt(note.get("benefit")), period=_opt(note.get("period")),
            clerk_id=record.clerk_id, clerk_name=record.clerk_name, code=code, hall=hall,
            reprint=reprint,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "mode": self.mode, "state": self.state, "seq": self.seq,
            "counter": self.counter, "amount_fen": self.amount_fen,
            "amount_yuan": yuan(self.amount_fen), "at": self.at.isoformat(),
            "terminal": self.terminal, "terminal_name": self.terminal_name,
            "card_number": self.card_number, "name": self.name,
            "entitlement": self.entitlement, "reference": self.reference,
            "transaction_id": self.transaction_id, "benefit": self.benefit,
            "period": self.period, "clerk_id": self.clerk_id, "clerk_name": self.clerk_name,
            "code": self.code,
            "hall": {"name": self.hall.name, "address": self.hall.address},
            "reprint": self.reprint,
        }  # fmt: skip


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) else None
