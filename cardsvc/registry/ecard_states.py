"""E-card states and the status-list entry an e-card publishes (pure, no I/O).

Here, not in :mod:`cardsvc.ecards`, because the registry's status lists publish e-card
entries in the shards cards use: the registry must not import the e-cards package,
which builds on it.
"""

from __future__ import annotations

from enum import StrEnum

from cardsvc.core.statuslist import Status
from cardsvc.registry.lifecycle import STATUS_OF, CardState


class ECardState(StrEnum):
    ACTIVE = "active"
    REPLACED = "replaced"  # a newer device was bound: final
    REVOKED = "revoked"  # its card was revoked, reissued or expired, or the holder died: final


def ecard_card_state(ecard_state: str, card_state: str) -> CardState:
    """The card state an e-card's entry publishes as: its own if final, else its card's.

    A suspended card suspends the e-card (resumed with the card); anything but an active
    e-card on a valid card is invalid.
    """
    if ecard_state != ECardState.ACTIVE:
        return CardState.REVOKED
    card = CardState(card_state)
    if card is CardState.PENDING_PERSONALIZATION:
        return CardState.REVOKED  # never bound to an unpersonalized card
    return card


def ecard_status(ecard_state: str, card_state: str) -> Status:
    """The status-list entry of an e-card (0 valid, 1 invalid, 2 suspended)."""
    return STATUS_OF[ecard_card_state(ecard_state, card_state)]
