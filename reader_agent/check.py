"""The genuine-card check at a counter, offline (DESIGN.md "Counters and transactions").

Order matters and is fixed: read the card document; verify it with the cached trust list;
challenge the chip with a fresh random nonce and verify the answer with the chip key *from
the document* (a document copied onto another chip fails here: a clone); check the card's
status in the cached verifier bundle and how current it is; only then the PIN. The PIN is
never asked of a card that failed an earlier step, and at its last try it is not presented
without an explicit override.

:func:`check_card` never raises for what it finds on the card: every step is recorded in
:class:`CheckResult` with passed/failed/skipped and the reason. Transport failures (card
pulled, pcscd gone, deadline) do raise their typed :mod:`reader_agent.errors`, because
then there is no verdict to give.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from cardsvc.core.carddoc import CardDocument, verify_card_document
from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.statuslist import Status
from reader_agent.cache import LEEWAY, AgentCache, CacheError
from reader_agent.card.constants import AUTH_CONTEXT, NONCE_LENGTH
from reader_agent.card.session import SscSession
from reader_agent.errors import (
    ApduError,
    CardError,
    InvalidPinError,
    InvalidPinFormatError,
    PinBlockedError,
)

__all__ = [
    "DEFAULT_MAX_STATUS_AGE",
    "ONLINE_MAX_STATUS_AGE",
    "CheckResult",
    "Outcome",
    "Step",
    "StepResult",
    "Verdict",
    "check_card",
]

#: A status list older than this is not trusted offline (the issuer's lists live 7 days,
#: but a revoked card must not keep working at a counter for a week).
DEFAULT_MAX_STATUS_AGE = timedelta(hours=24)
#: While the issuer answers, a check uses status no older than this: a card reported lost
#: in the wallet is refused at every online counter within half a minute.
ONLINE_MAX_STATUS_AGE = timedelta(seconds=30)


class Step(StrEnum):
    READ_DOCUMENT = "read-document"
    VERIFY_DOCUMENT = "verify-document"
    CHIP_AUTHENTICATION = "chip-authentication"
    STATUS = "status"
    PIN = "pin"


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Verdict(StrEnum):
    """The one-word answer for the clerk."""

    GENUINE = "genuine"  # steps 1-4 passed (and the PIN, if it was asked)
    NOT_PERSONALIZED = "not-personalized"
    INVALID_DOCUMENT = "invalid-document"
    CLONE = "clone"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    STATUS_UNKNOWN = "status-unknown"
    PIN_FAILED = "pin-failed"
    PIN_BLOCKED = "pin-blocked"
    PIN_REFUSED = "pin-refused"  # last try, no override


@dataclass(frozen=True, kw_only=True, slots=True)
class StepResult:
    step: Step
    outcome: Outcome
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckResult:
    """Every step with its outcome, the verdict, and what was learnt on the way."""

    verdict: Verdict
    steps: tuple[StepResult, ...]
    document: CardDocument | None
    status: Status | int | None
    pin_tries_left: int | None
    status_age: timedelta | None = None  # how current the status used was, if one was
    status_as_of: datetime | None = None  # the time that status was current at the issuer

    @property
    def genuine(self) -> bool:
        """The card is the one the issuer personalised, and in good standing."""
        return self.verdict is Verdict.GENUINE


#: Asked for the PIN with the tries left; returns the PIN, or None to skip the PIN step.
PinPrompt = Callable[[int], str | None]


def check_card(
    session: SscSession,
    *,
    cache: AgentCache,
    now: datetime,
    pin: PinPrompt | None = None,
    allow_last_try: bool = False,
    max_status_age: timedelta = DEFAULT_MAX_STATUS_AGE,
) -> CheckResult:
    """Run the genuine-card check on the card behind ``session``; see the module doc.

    ``pin`` None skips the PIN (the tries left are still read and reported).
    """
    steps: list[StepResult] = []
    status_age: timedelta | None = None
    status_as_of: datetime | None = None

    def record(step: Step, outcome: Outcome, reason: str) -> None:
        steps.append(StepResult(step=step, outcome=outcome, reason=reason))

    def finish(
        verdict: Verdict,
        document: CardDocument | None = None,
        status: Status | int | None = None,
        tries: int | None = None,
    ) -> CheckResult:
        done = {s.step for s in steps}
        for step in Step:
            if step not in done:
                record(step, Outcome.SKIPPED, f"not run: an earlier step gave {verdict.value}")
        return CheckResult(
            verdict=verdict,
            steps=tuple(steps),
            document=document,
            status=status,
            pin_tries_left=tries,
            status_age=status_age,
            status_as_of=status_as_of,
        )

    # 1. Read the card document.
    try:
        token_bytes = session.read_document()
        token = token_bytes.decode("ascii")
    except UnicodeDecodeError:
        record(Step.READ_DOCUMENT, Outcome.FAILED, "card document is not ASCII (not a JWS)")
        return finish(Verdict.INVALID_DOCUMENT)
    except CardError as exc:
        record(Step.READ_DOCUMENT, Outcome.FAILED, exc.detail)
        return finish(Verdict.NOT_PERSONALIZED)
    record(Step.READ_DOCUMENT, Outcome.PASSED, f"{len(token_bytes)} bytes")

    # 2. Verify it with the cached trust list.
    try:
        trust_list = cache.trust_list(now=now)
        document = verify_card_document(token, trust_list=trust_list, now=now, leeway=LEEWAY)
    except CacheError as exc:
        record(Step.VERIFY_DOCUMENT, Outcome.FAILED, f"no usable trust list: {exc.detail}")
        return finish(Verdict.STATUS_UNKNOWN)
    except VerificationError as exc:
        record(Step.VERIFY_DOCUMENT, Outcome.FAILED, f"{exc.check}: {exc.detail}")
        return finish(Verdict.INVALID_DOCUMENT)
    except CoreError as exc:
        record(Step.VERIFY_DOCUMENT, Outcome.FAILED, exc.detail)
        return finish(Verdict.INVALID_DOCUMENT)
    record(
        Step.VERIFY_DOCUMENT,
        Outcome.PASSED,
        f"card {document.card_number} signed by trust list key (sequence {trust_list.sequence})",
    )

    # 3. Challenge the chip: only the chip holding the key in the document can answer.
    nonce = secrets.token_bytes(NONCE_LENGTH)
    try:
        signature = session.internal_authenticate(nonce)
        document.chip_key.verify_raw(signature, AUTH_CONTEXT + nonce)
    except (VerificationError, ApduError) as exc:
        reason = exc.detail if isinstance(exc, ApduError) else "signature does not verify"
        record(
            Step.CHIP_AUTHENTICATION,
            Outcome.FAILED,
            f"chip did not prove the document's key ({reason}): copied document (clone)",
        )
        return finish(Verdict.CLONE, document)
    record(Step.CHIP_AUTHENTICATION, Outcome.PASSED, "chip signed a fresh nonce")

    # 4. Status from the cached bundle, and how current it is.
    ref = document.status
    try:
        entry = cache.status(ref, now=now)
    except CacheError as exc:
        record(Step.STATUS, Outcome.FAILED, exc.detail)
        return finish(Verdict.STATUS_UNKNOWN, document)
    age = entry.age(now)
    status_age, status_as_of = age, entry.as_of
    source = (
        f"status confirmed by the issuer {human_age(age)} ago"
        if entry.confirmed
        else f"status signed by the issuer {human_age(age)} ago"
    ) + f" (bundle version {entry.bundle_version})"
    if age > max_status_age:
        record(
            Step.STATUS,
            Outcome.FAILED,
            f"{source}: older than the {human_age(max_status_age)} allowed; "
            "refresh the cache (`reader-agent cache update`)",
        )
        return finish(Verdict.STATUS_UNKNOWN, document)
    status = entry.status
    if status != Status.VALID:
        verdict = Verdict.SUSPENDED if status == Status.SUSPENDED else Verdict.REVOKED
        name = status.name if isinstance(status, Status) else f"status value {status}"
        record(Step.STATUS, Outcome.FAILED, f"card status is {name} ({verdict.value}); {source}")
        return finish(verdict, document, status)
    record(Step.STATUS, Outcome.PASSED, f"VALID; {source}")

    # 5. PIN: tries left first; at the last try only with an explicit override.
    pin_status = session.pin_status()
    tries = pin_status.tries_left
    if pin_status.blocked:
        record(Step.PIN, Outcome.FAILED, "PIN is blocked: unblock it with the PUK")
        return finish(Verdict.PIN_BLOCKED, document, status, 0)
    if pin is None or tries is None:
        reason = "PIN already verified" if tries is None else f"not asked ({tries} tries left)"
        record(Step.PIN, Outcome.SKIPPED, reason)
        return finish(Verdict.GENUINE, document, status, tries)
    if tries == 1 and not allow_last_try:
        record(
            Step.PIN,
            Outcome.FAILED,
            "one try left: refused without an explicit override (a wrong PIN would block it)",
        )
        return finish(Verdict.PIN_REFUSED, document, status, tries)
    entered = pin(tries)
    if entered is None:
        record(Step.PIN, Outcome.SKIPPED, f"cardholder declined ({tries} tries left)")
        return finish(Verdict.GENUINE, document, status, tries)
    try:
        session.verify_pin(entered)
    except InvalidPinError as exc:
        record(Step.PIN, Outcome.FAILED, f"wrong PIN, {exc.tries_left} tries left")
        return finish(Verdict.PIN_FAILED, document, status, exc.tries_left)
    except PinBlockedError:
        record(Step.PIN, Outcome.FAILED, "PIN is blocked: unblock it with the PUK")
        return finish(Verdict.PIN_BLOCKED, document, status, 0)
    except InvalidPinFormatError as exc:
        record(Step.PIN, Outcome.FAILED, f"{exc.detail} (not sent to the card, no try used)")
        return finish(Verdict.PIN_FAILED, document, status, tries)
    record(Step.PIN, Outcome.PASSED, "PIN verified")
    return finish(Verdict.GENUINE, document, status, None)


def human_age(delta: timedelta) -> str:
    """An age as a clerk reads it: seconds, minutes, or hours."""
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
