"""E-card states and the status-list entry an e-card publishes (pure, no I/O).

Here, not in :mod:`cardsvc.ecards`, because the registry's status lists publish e-card
entries in the shards cards use: the registry must not import the e-cards package,
which builds on it.
"""

from __future__ import annotations

from cardsvc.core.statuslist import Status

# Defined beside the tables (the ecards table's state column holds it), named here too.
from cardsvc.db.states import ECardState as ECardState
from cardsvc.registry.lifecycle import STATUS_OF, CardState


def ecard_card_state(ecard_state: ECardState, card_state: CardState) -> CardState:
    """The card state an e-card's entry publishes as: its own if final, else its card's.

    A suspended card suspends the e-card (resumed with the card); anything but an active
    e-card on a valid card is invalid.
    """
    if ecard_state is not ECardState.ACTIVE:
        return CardState.REVOKED
    if card_state is CardState.PENDING_PERSONALIZATION:
        return CardState.REVOKED  # never bound to an unpersonalized card
    return card_state


def ecard_status(ecard_state: ECardState, card_state: CardState) -> Status:
    """The status-list entry of an e-card (0 valid, 1 invalid, 2 suspended)."""
    return STATUS_OF[ecard_card_state(ecard_state, card_state)]
