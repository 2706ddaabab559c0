"""Registry errors: each carries the data a client needs, mapped to problem+json fields."""

from __future__ import annotations

from typing import Any

from cardsvc.errors import CardsvcError, Conflict, Invalid, NotFound


class RegistryError(CardsvcError):
    """Root of registry errors; ``fields`` become extra members of the problem document."""

    code = "registry"

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.fields: dict[str, Any] = fields


class NotFoundError(NotFound, RegistryError):
    code = "not-found"


class PersonNotFoundError(NotFoundError):
    code = "person-not-found"


class CardNotFoundError(NotFoundError):
    code = "card-not-found"


class ConflictError(Conflict, RegistryError):
    """The request is well-formed but the registry's current state forbids it."""

    code = "conflict"


class DuplicatePersonError(ConflictError):
    code = "person-exists"

    def __init__(self, person_id: str) -> None:
        super().__init__(
            "a person with this citizen ID number is already enrolled",
            existing_person_id=person_id,
            existing=f"/v1/persons/{person_id}",
        )
        self.person_id = person_id


class LiveCardExistsError(ConflictError):
    code = "live-card-exists"

    def __init__(self, card_number: str | None) -> None:
        super().__init__(
            "the person already has a card that is pending personalization, active or "
            "suspended; report it lost, revoke it or reissue it instead",
            existing_card_number=card_number,
        )


class HolderDeceasedError(ConflictError):
    code = "holder-deceased"


class IllegalTransitionError(ConflictError):
    """A lifecycle action the card's current state does not allow."""

    code = "illegal-transition"

    def __init__(self, action: str, state: str, reason: str) -> None:
        super().__init__(f"cannot {action.replace('_', ' ')}: {reason}", action=action, state=state)
        self.action = action
        self.state = state
        self.reason = reason


class ChipKeyError(Invalid, RegistryError):
    code = "invalid-chip-key"


class ChipKeyInUseError(ConflictError):
    code = "chip-key-in-use"


class BadRequestError(Invalid, RegistryError):
    code = "bad-request"
