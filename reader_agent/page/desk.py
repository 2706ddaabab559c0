"""The counter desk: one card at a time, from insertion to receipt.

Steps, each its own request from the page, on one card connection:

1. the card goes in: the watcher reports it, and the desk runs the genuine-card check
   without the PIN (document, signature, chip challenge, status, tries left);
2. the PIN: a *fresh* connection (the card resets, so no PIN state from before survives),
   the whole check again and then the PIN, in the fixed order of :func:`check_card`;
3. the clerk confirms a collection or a payment: :func:`transact_checked` on that same
   connection (the card still holds the PIN verified), journal first, then the card signs.

After a transaction, on removal, or when the clerk ends the customer, the connection is
closed, which resets the card: the next transaction needs the PIN again. The PIN itself is
only passed through to the card (never stored, logged or sent back).

A removal is reported at once, even in the middle of a step: the step in flight fails on
the card (nothing is signed without the card, and a prepared record the card never signed
is voided on the spot), and its result is thrown away if the card changed meanwhile.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cardsvc.core.transaction import Kind
from reader_agent import pcsc
from reader_agent.cache import AgentCache
from reader_agent.card.session import SscSession
from reader_agent.check import DEFAULT_MAX_STATUS_AGE, CheckResult, check_card
from reader_agent.counter import OfflinePolicy, transact_checked
from reader_agent.errors import AgentError, NoCardError, ReaderError
from reader_agent.issuer import IssuerClient
from reader_agent.page.books import Books
from reader_agent.page.views import Hall, Identity, Receipt, check_view, pin_passed
from reader_agent.page.words import CARD_PULLED, Words, explain, problem_words
from wording import render, text

__all__ = ["Desk", "DeskError", "DeskSettings"]


class DeskError(AgentError):
    """A desk step that cannot run now; ``words`` say why in plain words."""

    code = "desk"

    def __init__(self, words: Words) -> None:
        super().__init__(render("en", words.detail))  # for logs; the page renders its own
        self.words = words


def _refuse(code: str, *, key: str | None = None, status: int = 409) -> DeskError:
    return DeskError(problem_words(status, code, key=key))


@dataclass(frozen=True, kw_only=True)
class DeskSettings:
    reader: str | None = None  # None: the first reader with a card
    card_timeout: float = 10.0
    #: A PIN check older than this is not used for a transaction (the cardholder may have
    #: walked away): ask for the PIN again.
    pin_valid_for: timedelta = timedelta(minutes=5)
    policy: OfflinePolicy = field(default_factory=OfflinePolicy)
    #: The service hall's name and address, at the head of every receipt.
    hall: Hall = field(default_factory=Hall)


class Desk:
    """The card in front of the clerk; thread-safe."""

    def __init__(
        self,
        *,
        settings: DeskSettings,
        cache: AgentCache,
        issuer: IssuerClient,
        books: Books,
        clock: Callable[[], datetime],
        changed: Callable[[], None],
        after_transaction: Callable[[], None] = lambda: None,
        status_limit: Callable[[], timedelta] = lambda: DEFAULT_MAX_STATUS_AGE,
        terminal_name: str = "",
    ) -> None:
        self._settings = settings
        self._cache = cache
        self._issuer = issuer
        self._books = books
        self._clock = clock
        self._changed = changed
        self._after_transaction = after_transaction
        self._status_limit = status_limit
        self._terminal_name = terminal_name
        self._state = threading.Lock()  # the fields below; held only briefly
        self._op = threading.Lock()  # one card operation at a time
        self._readers: tuple[pcsc.ReaderState, ...] = ()
        #: None and no readers yet: still looking.
        self._reader_error: Words | None = None
        self._readers_seen = False
        self._reader: str | None = settings.reader
        self._present = False
        self._generation = 0
        self._connection: pcsc.PcscConnection | None = None
        self._session: SscSession | None = None
        self._session_generation = -1
        self._check: CheckResult | None = None
        self._checked_at: datetime | None = None
        self._phase = "absent"
        self._receipt: Receipt | None = None
        self._notice: Words | None = None
        #: Benefit and period of the entitlements last listed for the card in the reader
        #: (entitlement id -> note), for the receipt.
        self._entitlement_notes: dict[str, dict[str, str]] = {}

    # -- the page's view ------------------------------------------------------------------

    def view(self, lang: str) -> dict[str, Any]:
        """The page's state, its words in ``lang``."""
        with self._state:
            check = self._check
            return {
                "reader": {
                    "name": self._reader,
                    "readers": [s.name for s in self._readers],
                    "error": self._reader_words(lang),
                },
                "card": {"present": self._present, "phase": self._phase},
                "check": check_view(check, lang) if check is not None else None,
                "identity": (
                    Identity.of(check.document).to_json()
                    if check is not None and check.document is not None
                    else None
                ),
                "receipt": self._receipt.to_json() if self._receipt else None,
                "notice": self._notice.problem(lang) if self._notice else None,
            }

    def identity(self) -> Identity:
        """The checked card's holder, or DeskError when no card was checked."""
        with self._state:
            check = self._check
        if check is None or check.document is None or not check.genuine:
            raise _refuse("not-checked")
        return Identity.of(check.document)

    def remember_entitlements(self, card_number: str, notes: dict[str, dict[str, str]]) -> None:
        """The entitlements just listed for ``card_number``: their benefit and period
        are printed on the receipt of a collection (kept until the customer ends)."""
        with self._state:
            check = self._check
            if check is not None and check.document is not None and str(
                check.document.card_number
            ) == card_number:
                self._entitlement_notes.update(notes)

    def proven_card(self) -> str | None:
        """The card number of the card in the reader whose document signature and chip
        passed the check just now, whatever its status (a suspended card's too); None
        otherwise. The identity check a resume needs."""
        from reader_agent.check import Outcome, Step

        with self._state:
            check, present = self._check, self._present
        if check is None or check.document is None or not present:
            return None
        passed = {s.step for s in check.steps if s.outcome is Outcome.PASSED}
        if {Step.VERIFY_DOCUMENT, Step.CHIP_AUTHENTICATION} <= passed:
            return str(check.document.card_number)
        return None

    # -- the readers (watcher thread) -----------------------------------------------------

    def _reader_words(self, lang: str) -> str | None:
        if self._reader_error is not None:
            said = self._reader_error.problem(lang)
            return f"{said['detail']} {said['next']}"
        if not self._readers_seen:
            return text(lang, "counter.reader.searching")
        return None if self._readers else text(lang, "counter.reader.none")

    def on_readers(self, states: tuple[pcsc.ReaderState, ...], error: Words | None) -> None:
        by_name = {s.name: s for s in states}
        with self._state:
            self._readers = states
            self._reader_error = error
            self._readers_seen = True
            target = self._settings.reader
            if target is None:
                current = by_name.get(self._reader or "")
                if current is not None and current.present:
                    target = current.name
                else:
                    target = next((s.name for s in states if s.present), self._reader)
            now_present = target is not None and target in by_name and by_name[target].present
            inserted = now_present and (not self._present or target != self._reader)
            removed = self._present and not now_present
            self._reader = target
            self._present = now_present
            if inserted or removed:
                self._generation += 1
            if removed:
                # While the card signs, the transaction itself says what became of it.
                if self._phase in ("checking", "pin-ok", "error"):
                    self._notice = CARD_PULLED
                self._check = None
                self._checked_at = None
                self._phase = "absent"
            if inserted:
                self._check = None
                self._receipt = None
                self._notice = None
                self._entitlement_notes = {}
                self._phase = "checking"
            generation = self._generation
        self._changed()
        if removed and self._op.acquire(blocking=False):
            try:
                self._drop_connection()
            finally:
                self._op.release()
        if inserted:
            threading.Thread(
                target=self._auto_check, args=(generation,), name="card check", daemon=True
            ).start()

    def _auto_check(self, generation: int) -> None:
        with suppress(AgentError):  # shown through the notice
            self.check(pin=None, allow_last_try=False, generation=generation)

    # -- steps ------------------------------------------------------------------------------

    @contextmanager
    def _operation(self) -> Iterator[None]:
        if not self._op.acquire(timeout=self._settings.card_timeout * 3):
            raise _refuse("busy")
        try:
            yield
        finally:
            self._op.release()

    def _current(self) -> tuple[int, str]:
        with self._state:
            if not self._present or self._reader is None:
                raise _refuse("no-card")
            return self._generation, self._reader

    def _drop_connection(self) -> None:
        connection, self._connection, self._session = self._connection, None, None
        self._session_generation = -1
        if connection is not None:
            connection.close()

    def _fail(self, exc: AgentError, generation: int) -> DeskError:
        """A step failed: the connection is over; say it in plain words."""
        self._drop_connection()
        with self._state:
            pulled = (
                generation != self._generation
                or not self._present
                or isinstance(exc, NoCardError)
            )
            words = CARD_PULLED if pulled else explain(exc)
            if generation == self._generation or not self._present:
                self._notice = words
                if self._check is not None:
                    self._check = _without_pin(self._check)
                if self._phase in ("checking", "signing", "pin-ok"):
                    self._phase = "error" if self._present else "absent"
        self._changed()
        return DeskError(words)

    def check(
        self, *, pin: str | None, allow_last_try: bool, generation: int | None = None
    ) -> CheckResult:
        """The genuine-card check on a fresh connection; with ``pin``, the PIN as well."""
        with self._operation():
            current, reader = self._current()
            if generation is not None and generation != current:
                raise DeskError(CARD_PULLED)  # an auto check for a card already gone
            with self._state:
                self._phase = "checking"
                self._notice = None
                if pin is None:  # a fresh check: the last receipt is not this one's
                    self._receipt = None
            self._changed()
            try:
                self._drop_connection()
                self._connection = pcsc.connect(reader, timeout=self._settings.card_timeout)
                self._session = SscSession(self._connection)
                self._session_generation = current
                max_status_age = self._status_limit()
                result = check_card(
                    self._session, cache=self._cache, now=self._clock(),
                    pin=(lambda _tries: pin) if pin is not None else None,
                    allow_last_try=allow_last_try, max_status_age=max_status_age,
                )  # fmt: skip
            except AgentError as exc:
                raise self._fail(exc, current) from None
            with self._state:
                if current != self._generation:
                    stale = True
                else:
                    stale = False
                    self._check = result
                    self._checked_at = self._clock()
                    self._phase = "pin-ok" if pin_passed(result) else "checked"
            if stale:
                self._drop_connection()
                raise DeskError(CARD_PULLED)
            if not pin_passed(result):
                # Without a verified PIN the connection is of no further use.
                self._drop_connection()
            self._changed()
            return result

    def transact(
        self,
        *,
        kind: Kind,
        amount_fen: int,
        entitlement: uuid.UUID | None,
        reference: str | None,
        clerk: tuple[str, str] | None = None,
    ) -> Receipt:
        """Collect or pay on the card whose PIN was just verified, in the name of
        ``clerk`` (client id, display name); the receipt."""
        with self._operation():
            generation, _reader = self._current()
            with self._state:
                check, checked_at = self._check, self._checked_at
                session = self._session if self._session_generation == generation else None
                if check is None or not pin_passed(check) or session is None:
                    raise _refuse("pin-needed")
                if checked_at is None or self._clock() - checked_at > self._settings.pin_valid_for:
                    self._phase = "checked"
                    raise _refuse("pin-too-old")
                if check.document is None:  # a genuine check always carries it
                    raise _refuse("not-checked", key="no-data")
                identity = Identity.of(check.document)
                listed = self._entitlement_notes.get(str(entitlement)) if entitlement else None
                # What the receipt prints beside the signed record (kept in the journal).
                note = {**(listed or {}), "holder": identity.name}
                self._phase = "signing"
                self._notice = None
                self._receipt = None
            self._changed()
            try:
                with self._books.open() as journal:
                    result = transact_checked(
                        session, check, kind=kind, amount_fen=amount_fen,
                        entitlement=entitlement, reference=reference, journal=journal,
                        cache=self._cache, issuer=self._issuer, signer=self._issuer.signer,
                        state_dir=self._books.state_dir, now=self._clock,
                        policy=self._settings.policy,
                        clerk_id=clerk[0] if clerk else None,
                        clerk_name=clerk[1] if clerk else None, note=note,
                    )  # fmt: skip
            except ReaderError as exc:
                raise self._fail(exc, generation) from None
            except AgentError as exc:
                self._drop_connection()
                words = explain(exc)
                with self._state:
                    self._notice = words
                    self._phase = "checked" if self._present else "absent"
                    if self._check is not None:
                        self._check = _without_pin(self._check)
                self._changed()
                self._after_transaction()
                raise DeskError(words) from None
            finally:
                # Reset the card: the PIN is needed again for anything further.
                self._drop_connection()
            receipt = Receipt.of(result, hall=self._settings.hall,
                                 terminal_name=self._terminal_name)
            with self._state:
                self._receipt = receipt
                self._notice = None
                self._phase = "done" if self._present else "absent"
                if self._check is not None:
                    self._check = _without_pin(self._check)
            self._changed()
            self._after_transaction()
            return receipt

    def chip_answer(self, get_nonce: Callable[[str], bytes]) -> tuple[str, bytes]:
        """For an e-card activation at the counter: the card whose PIN was just verified
        signs the issuer's nonce (INTERNAL AUTHENTICATE, on the same connection).
        ``get_nonce(card_number)`` fetches the nonce; (card number, the chip's answer).
        The card is reset afterwards: anything further needs the PIN again."""
        with self._operation():
            generation, _reader = self._current()
            with self._state:
                check, checked_at = self._check, self._checked_at
                session = self._session if self._session_generation == generation else None
                if check is None or not pin_passed(check) or session is None \
                        or check.document is None:  # fmt: skip
                    raise _refuse("pin-needed")
                if checked_at is None or self._clock() - checked_at > self._settings.pin_valid_for:
                    self._phase = "checked"
                    raise _refuse("pin-too-old")
                card_number = str(check.document.card_number)
            try:
                nonce = get_nonce(card_number)
                signature = session.internal_authenticate(nonce)
            except ReaderError as exc:
                raise self._fail(exc, generation) from None
            finally:
                self._drop_connection()
                with self._state:
                    if self._check is not None:
                        self._check = _without_pin(self._check)
                    if self._phase == "pin-ok":
                        self._phase = "checked" if self._present else "absent"
                self._changed()
            return card_number, signature

    def end_customer(self) -> None:
        """Forget the card's check, receipt and notice and reset the card (the clerk's
        'Next customer'). Never refuses: if a card step hangs past its time, the desk is
        cleared all the same and that step's result is thrown away when it ends. With a
        card still in the reader (a virtual reader's cannot be pulled) the phase is
        ``ended``, and a check (``POST /api/check``) starts the next customer on it."""
        acquired = self._op.acquire(timeout=self._settings.card_timeout * 3)
        try:
            if acquired:
                self._drop_connection()
            with self._state:
                if not acquired:
                    self._generation += 1  # the step in flight is now stale
                self._check = None
                self._checked_at = None
                self._receipt = None
                self._notice = None
                self._entitlement_notes = {}
                self._phase = "ended" if self._present else "absent"
        finally:
            if acquired:
                self._op.release()
        self._changed()


def _without_pin(check: CheckResult) -> CheckResult:
    """The check as it stands after the card was reset: the PIN is no longer verified."""
    from dataclasses import replace

    from reader_agent.check import Outcome, Step, StepResult

    steps = tuple(
        StepResult(step=s.step, outcome=Outcome.SKIPPED, reason="used for the last "
                   "transaction: needed again for the next one")
        if s.step is Step.PIN else s
        for s in check.steps
    )  # fmt: skip
    return replace(check, steps=steps)
