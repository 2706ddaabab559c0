"""Card states, lifecycle actions and the explicit rules between them (pure, no I/O).

::

    issue                 -> pending_personalization
    personalize           pending_personalization -> active
    report_temporary_loss active -> suspended (lapses back to active after N days)
    lapse                 suspended -> active (the system, once the lapse time has passed)
    resume                suspended -> active
    report_loss           active | suspended -> revoked (formal loss: final)
    revoke                pending_personalization | active | suspended -> revoked
    reissue               active | suspended -> revoked, plus a new card for the person
    expire                pending_personalization | active | suspended -> expired
    holder_deceased       pending_personalization | active | suspended -> revoked

``revoked`` and ``expired`` are final.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from cardsvc.core.statuslist import Status

# Defined beside the tables (the cards table's state column holds it), named here too.
from cardsvc.db.states import CardState as CardState
from cardsvc.registry.errors import IllegalTransitionError


class Action(StrEnum):
    ISSUE = "issue"
    PERSONALIZE = "personalize"
    REPORT_TEMPORARY_LOSS = "report_temporary_loss"
    LAPSE = "lapse"
    RESUME = "resume"
    REPORT_LOSS = "report_loss"
    REVOKE = "revoke"
    REISSUE = "reissue"
    EXPIRE = "expire"
    HOLDER_DECEASED = "holder_deceased"


#: Actions an operator may ask for through the status-change endpoint.
class OperatorAction(StrEnum):
    REPORT_TEMPORARY_LOSS = "report_temporary_loss"
    RESUME = "resume"
    REPORT_LOSS = "report_loss"
    REVOKE = "revoke"


LIVE = frozenset({CardState.PENDING_PERSONALIZATION, CardState.ACTIVE, CardState.SUSPENDED})
FINAL = frozenset({CardState.REVOKED, CardState.EXPIRED})

#: The status-list entry each state publishes.
STATUS_OF = MappingProxyType(
    {
        CardState.PENDING_PERSONALIZATION: Status.VALID,
        CardState.ACTIVE: Status.VALID,
        CardState.SUSPENDED: Status.SUSPENDED,
        CardState.REVOKED: Status.INVALID,
        CardState.EXPIRED: Status.INVALID,
    }
)


@dataclass(frozen=True, kw_only=True)
class Rule:
    allowed_from: frozenset[CardState]
    to: CardState


RULES = MappingProxyType(
    {
        Action.PERSONALIZE: Rule(
            allowed_from=frozenset({CardState.PENDING_PERSONALIZATION}), to=CardState.ACTIVE
        ),
        Action.REPORT_TEMPORARY_LOSS: Rule(
            allowed_from=frozenset({CardState.ACTIVE}), to=CardState.SUSPENDED
        ),
        Action.LAPSE: Rule(allowed_from=frozenset({CardState.SUSPENDED}), to=CardState.ACTIVE),
        Action.RESUME: Rule(allowed_from=frozenset({CardState.SUSPENDED}), to=CardState.ACTIVE),
        Action.REPORT_LOSS: Rule(
            allowed_from=frozenset({CardState.ACTIVE, CardState.SUSPENDED}), to=CardState.REVOKED
        ),
        Action.REVOKE: Rule(allowed_from=LIVE, to=CardState.REVOKED),
        Action.REISSUE: Rule(
            allowed_from=frozenset({CardState.ACTIVE, CardState.SUSPENDED}), to=CardState.REVOKED
        ),
        Action.EXPIRE: Rule(allowed_from=LIVE, to=CardState.EXPIRED),
        Action.HOLDER_DECEASED: Rule(allowed_from=LIVE, to=CardState.REVOKED),
    }
)

_WHY_NOT = MappingProxyType(
    {
        CardState.PENDING_PERSONALIZATION: "the card is not personalized yet",
        CardState.ACTIVE: "the card is active",
        CardState.SUSPENDED: "the card is suspended",
        CardState.REVOKED: "the card is revoked, which is final",
        CardState.EXPIRED: "the card has expired, which is final",
    }
)


def transition(action: Action, state: CardState, *, revocation_reason: str | None = None) -> Rule:
    """The rule for ``action`` from ``state``; :class:`IllegalTransitionError` if none."""
    rule = RULES.get(action)
    if rule is None:
        raise IllegalTransitionError(action.value, state.value, "not a lifecycle transition")
    if state not in rule.allowed_from:
        reason = _WHY_NOT[state]
        if state is CardState.REVOKED and revocation_reason:
            reason += f" (revoked: {revocation_reason})"
        allowed = ", ".join(sorted(s.value for s in rule.allowed_from))
        raise IllegalTransitionError(
            action.value, state.value, f"{reason}; allowed only from {allowed}"
        )
    return rule
