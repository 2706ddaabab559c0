"""Benefit collection and fee payment at the counter, online or offline, and sync.

Flow (DESIGN.md "Counters and transactions"): the genuine-card check and the PIN
(:func:`reader_agent.check.check_card`), then

- **online**: ``POST /v1/transactions/challenges`` gives the issuer's nonce -> the record is
  written to the journal -> SIGN TRANSACTION -> the terminal counter-signs -> the journal is
  completed -> ``POST /v1/transactions`` with an Idempotency-Key derived from the journal
  record (a retry replays the stored answer, never pays twice);
- **offline**, only when the issuer is unreachable (:class:`IssuerUnreachableError`) and
  every rule of :class:`OfflinePolicy` holds; otherwise refused with the reason.

Offline nonce. Offline the issuer cannot hand out a nonce, so the terminal draws 16 random
bytes itself. That is acceptable because the nonce's job online -- proving the card answered
*now*, not a replayed old answer -- is done offline by things the card and the journal
guarantee: the card's counter goes up and is persisted before every signature (a replayed or
cloned answer repeats or contradicts a counter), the terminal's sequence number is unique and
hash-chained in its journal, and the terminal signs the record with its certified key. The
issuer checks at sync: both signatures, the terminal certificate, (terminal, seq) and
(card, counter) uniqueness, counter order against the record times of the same card, and
that the entitlement is still open -- and holds anything contradictory for review
instead of paying it.

The terminal's certificate is fetched once online and kept in the state directory.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from cardsvc.core.fetch import RefreshOutcome
from cardsvc.core.files import write_atomically
from cardsvc.core.signing import Signer
from cardsvc.core.transaction import Kind, SignedRecord, TransactionData
from reader_agent.cache import AgentCache, CacheError
from reader_agent.card.session import SscSession
from reader_agent.check import (
    DEFAULT_MAX_STATUS_AGE,
    ONLINE_MAX_STATUS_AGE,
    CheckResult,
    Outcome,
    PinPrompt,
    Step,
    check_card,
)
from reader_agent.errors import AgentError, IssuerError, IssuerUnreachableError
from reader_agent.issuer import IssuerClient
from reader_agent.journal import DAMAGED_FLAG, Journal, JournalRecord, RecordState

__all__ = [
    "CounterRefusedError",
    "CounterResult",
    "OfflinePolicy",
    "Outcome",
    "sync",
    "transact",
    "transact_checked",
]

CERTIFICATE_FILE = "terminal-certificate.jwt"
BATCH_SIZE = 100  # ~50 KB: under the issuer's default 64 KB request limit
_OUTCOMES = {"accepted": RecordState.ACCEPTED, "duplicate": RecordState.DUPLICATE,
             "conflict": RecordState.CONFLICT}  # fmt: skip


class CounterRefusedError(AgentError):
    """The transaction was refused before the card signed; ``reason`` names the rule."""

    code = "counter-refused"

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class OfflinePolicy:
    """The explicit rules for working without the issuer."""

    floor_limit_fen: int = 500_000
    max_offline_uses_per_card: int = 3
    max_offline_total_fen: int = 5_000_000
    max_status_age: timedelta = timedelta(hours=24)
    max_trust_list_age: timedelta = timedelta(days=7)


@dataclass(frozen=True, kw_only=True)
class CounterResult:
    record: JournalRecord
    mode: str
    answer: dict[str, Any] | None
    check: CheckResult


def _crash_point(name: str) -> None:
    """Failpoint for the reliability tests: ``READER_AGENT_CRASH_AT=name`` kills the agent
    here with SIGKILL (no cleanup runs, exactly as a power cut or `kill -9`)."""
    if os.environ.get("READER_AGENT_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def load_certificate(state_dir: Path, issuer: IssuerClient | None) -> str:
    """The terminal certificate: the stored one, else fetched once from the issuer."""
    path = state_dir / CERTIFICATE_FILE
    try:
        return path.read_text("ascii").strip()
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        raise CounterRefusedError(f"cannot read {path}: {exc}", reason="certificate") from None
    if issuer is None:
        raise CounterRefusedError("no terminal certificate yet", reason="certificate")
    try:
        certificate = issuer.terminal_certificate()
    except IssuerUnreachableError:
        raise CounterRefusedError(
            "no terminal certificate yet and the issuer is unreachable: connect once",
            reason="certificate",
        ) from None
    write_atomically(path, certificate.encode())
    return certificate


def _offline_allowed(
    policy: OfflinePolicy,
    journal: Journal,
    cache: AgentCache,
    check: CheckResult,
    data: TransactionData,
    now: datetime,
) -> None:
    def refuse(reason: str, detail: str) -> NoReturn:
        raise CounterRefusedError(f"offline refused: {detail}", reason=reason)

    if data.amount_fen > policy.floor_limit_fen:
        refuse("floor-limit", f"{data.amount_fen} fen is above the offline floor limit "
                              f"of {policy.floor_limit_fen} fen")  # fmt: skip
    uses = journal.offline_uses_since_online(data.card)
    if uses >= policy.max_offline_uses_per_card:
        refuse("card-offline-uses", f"card {data.card} was used offline {uses} times since "
                                    "its last online contact")  # fmt: skip
    total = journal.offline_pending_total() + data.amount_fen
    if total > policy.max_offline_total_fen:
        limit = policy.max_offline_total_fen
        refuse(
            "terminal-offline-total",
            f"this terminal's unsynced offline total would be {total} fen (limit {limit})",
        )
    try:
        trust_list = cache.trust_list(now=now)
        if check.document is None:
            refuse("status", "no card document")
        status = cache.status(check.document.status, now=now)
    except CacheError as exc:
        refuse("cache", exc.detail)
    if status.age(now) > policy.max_status_age:
        refuse("status-age", "the cached status list is too old for offline use")
    if now - trust_list.issued_at > policy.max_trust_list_age:
        refuse("trust-list-age", "the cached trust list is too old for offline use")


def refreshed_status_limit(cache: AgentCache, issuer: IssuerClient, now: datetime) -> timedelta:
    """Refresh the cache from the issuer; how old a status a check may then use.

    The issuer answered: 30 s, so an online check never passes a card on status from
    before a loss report (an answer that did not verify leaves the held status too old to
    pass). No answer: the offline limit, and the check says how old the cached status is.
    """
    try:
        refresh = cache.refresh(issuer.bundle_url, now=now)
    except CacheError:
        return DEFAULT_MAX_STATUS_AGE  # nothing pinned yet: the check says so
    if refresh.outcome is RefreshOutcome.FAILED:
        return DEFAULT_MAX_STATUS_AGE
    return ONLINE_MAX_STATUS_AGE


def transact(
    session: SscSession,
    *,
    kind: Kind,
    amount_fen: int,
    entitlement: uuid.UUID | None,
    reference: str | None,
    journal: Journal,
    cache: AgentCache,
    issuer: IssuerClient,
    signer: Signer,
    state_dir: Path,
    pin: PinPrompt,
    now: Callable[[], datetime],
    policy: OfflinePolicy = OfflinePolicy(),
) -> CounterResult:
    """Check the card, then collect or pay online, or offline by the rules."""
    if not journal.report.intact:
        raise CounterRefusedError(f"journal damaged: {journal.report.reason}", reason="journal")
    check = check_card(session, cache=cache, now=now(), pin=pin,
                       max_status_age=refreshed_status_limit(cache, issuer, now()))  # fmt: skip
    return transact_checked(
        session, check, kind=kind, amount_fen=amount_fen, entitlement=entitlement,
        reference=reference, journal=journal, cache=cache, issuer=issuer, signer=signer,
        state_dir=state_dir, now=now, policy=policy,
    )  # fmt: skip


def transact_checked(
    session: SscSession,
    check: CheckResult,
    *,
    kind: Kind,
    amount_fen: int,
    entitlement: uuid.UUID | None,
    reference: str | None,
    journal: Journal,
    cache: AgentCache,
    issuer: IssuerClient,
    signer: Signer,
    state_dir: Path,
    now: Callable[[], datetime],
    policy: OfflinePolicy = OfflinePolicy(),
    clerk_id: str | None = None,
    clerk_name: str | None = None,
    note: Mapping[str, Any] | None = None,
) -> CounterResult:
    """Collect or pay on a card whose genuine-card check, PIN included, passed on this same
    ``session`` (the card keeps the PIN verified until the connection resets it).

    The counter page runs the check and the PIN as steps of their own, then this. If the
    card stops answering after the record is prepared and before it signed (pulled, reader
    gone), the record is voided at once: nothing was signed, nothing can be paid.
    """
    if not journal.report.intact:
        raise CounterRefusedError(f"journal damaged: {journal.report.reason}", reason="journal")
    pin_passed = any(s.step is Step.PIN and s.outcome is Outcome.PASSED for s in check.steps)
    if not check.genuine or not pin_passed or check.document is None:
        raise CounterRefusedError(
            f"genuine-card check: {check.verdict.value}"
            + ("" if pin_passed else " (the PIN was not verified)"),
            reason="check",
        )
    card = str(check.document.card_number)
    nonce: bytes
    try:
        certificate = load_certificate(state_dir, issuer)
        nonce = issuer.transaction_challenge()
        mode = "online"
    except IssuerUnreachableError:
        certificate = load_certificate(state_dir, None)
        nonce = secrets.token_bytes(16)  # see the module doc: offline nonce
        mode = "offline"
    data = TransactionData(
        kind=kind, card=card, terminal=journal.terminal_id, seq=journal.next_seq(),
        at=int(now().timestamp()), amount_fen=amount_fen, entitlement=entitlement,
        reference=reference,
    )  # fmt: skip
    if mode == "offline":
        _offline_allowed(policy, journal, cache, check, data, now())
    record = journal.prepare(mode=mode, nonce=nonce, data=data, clerk_id=clerk_id,
                             clerk_name=clerk_name, note=note)  # fmt: skip
    _crash_point("after-prepare")
    try:
        signature = session.sign_transaction(nonce, data.encode())
    except AgentError as exc:
        # No signature reached us: the record can never be paid, so it is voided now
        # (and reported at the next sync) rather than left prepared until a restart.
        journal.void(data.seq, f"the card did not sign ({exc.code})")
        raise
    _crash_point("after-card-signature")
    signed = SignedRecord.sign(nonce=nonce, data=data.encode(), counter=signature.counter,
                               card_signature=signature.signature, terminal=signer)  # fmt: skip
    record = journal.complete(data.seq, signed)
    _crash_point("after-complete")
    if mode == "offline":
        return CounterResult(record=record, mode=mode, answer=None, check=check)
    try:
        result = submit_online(issuer, journal, record, certificate)
    except IssuerUnreachableError:
        # Signed with the issuer's nonce, but the answer never came: sync uploads it.
        return CounterResult(record=journal.get(data.seq), mode=mode, answer=None, check=check)
    return CounterResult(record=journal.get(data.seq), mode=mode, answer=result, check=check)


def submit_online(
    issuer: IssuerClient, journal: Journal, record: JournalRecord, certificate: str
) -> dict[str, Any]:
    try:
        answer = issuer.submit_transaction(
            record.signed_record().to_json(), certificate=certificate,
            idempotency_key=record.idempotency_key, clerk_id=record.clerk_id,
        )  # fmt: skip
    except IssuerUnreachableError:
        raise
    except IssuerError as exc:
        problem = exc.problem if isinstance(exc.problem, dict) else {"detail": exc.detail}
        state = RecordState.CONFLICT if exc.status == 409 else RecordState.REJECTED
        journal.settle({record.seq: (state, problem)})
        raise
    journal.settle({record.seq: (RecordState.ACCEPTED, answer)})
    return dict(answer)


@dataclass(frozen=True, kw_only=True)
class SyncReport:
    uploaded: int
    accepted: int
    duplicate: int
    conflict: int
    rejected: int
    held_back: int  # from the damaged part, not uploaded without --include-damaged


def sync(
    journal: Journal,
    issuer: IssuerClient,
    *,
    certificate: str,
    include_damaged: bool = False,
    batch_size: int = BATCH_SIZE,
) -> SyncReport:
    """Upload pending records in batches; the issuer answers each. Verifies the chain first.

    Records from a damaged part of the journal are held back, or with ``include_damaged``
    sent with the ``journal-damaged`` flag (the issuer holds them for review).
    """
    journal.report = journal.verify()
    pending = journal.pending()
    held = [r for r in pending if r.damaged and not include_damaged]
    todo = [r for r in pending if not r.damaged or include_damaged]
    counts = dict.fromkeys(("accepted", "duplicate", "conflict", "rejected"), 0)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        items: list[dict[str, Any]] = []
        for record in chunk:
            item: dict[str, Any] = {"seq": record.seq}
            if record.state is RecordState.VOID:
                item["void"] = record.void_reason or "torn"
            else:
                item["record"] = record.signed_record().to_json()
            if record.damaged:
                item["flag"] = DAMAGED_FLAG
            if record.clerk_id is not None and record.state is not RecordState.VOID:
                item["clerk_id"] = record.clerk_id
            items.append(item)
        results = issuer.upload_batch(items, certificate=certificate)
        settled: dict[int, tuple[RecordState, dict[str, Any]]] = {}
        by_seq = {r.seq: r for r in chunk}
        for result in results:
            seq, outcome = result.seq, result.outcome
            if seq not in by_seq or outcome == "retry":
                continue  # retry: stored concurrently elsewhere, the next sync settles it
            if by_seq[seq].state is RecordState.VOID:
                settled[seq] = (RecordState.VOID, result.answer)
                continue
            state = _OUTCOMES.get(outcome, RecordState.REJECTED)
            if outcome == "duplicate" and result.reason:
                # Stored before (its first answer was lost), held for review, not accepted:
                # the issuer repeats the conflict's reason.
                state = RecordState.CONFLICT
            counts[state.value] += 1
            settled[seq] = (state, result.answer)
        journal.settle(settled)
    return SyncReport(uploaded=len(todo), held_back=len(held), **counts)


def sync_with_retry(
    run: Callable[[], SyncReport],
    *,
    attempts: int,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncReport:
    """Retry on an unreachable issuer with exponential backoff and jitter."""
    delay = base_delay
    for attempt in range(1, attempts + 1):
        try:
            return run()
        except IssuerUnreachableError:
            if attempt == attempts:
                raise
            sleep(delay * (0.5 + secrets.randbelow(1000) / 1000))
            delay = min(max_delay, delay * 2)
    raise AssertionError("unreachable")  # pragma: no cover
