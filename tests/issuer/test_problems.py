"""Problem documents: statuses come from error kinds, titles are words a person reads."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest
from fastapi.testclient import TestClient

import cardsvc
from cardsvc.api.problems import KINDS, status_and_title
from cardsvc.errors import CardsvcError
from cardsvc.services import Services
from tests.issuer.registry_helpers import assert_problem, bearer, client, enrol, issue, services

__all__ = ["client", "services"]

#: CamelCase with two or more humps, or any word ending in Error: a class name.
CLASS_NAME = re.compile(r"\b(?:[A-Z][a-z0-9]+){2,}\b|Error\b")


def _error_classes() -> list[type[CardsvcError]]:
    for module in pkgutil.walk_packages(cardsvc.__path__, "cardsvc."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)
    found, todo = [], [CardsvcError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


ERRORS = _error_classes()


def test_every_error_class_of_the_issuer_is_found() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {"IllegalTransitionError", "TokenRejectedError", "RateLimitedError"} <= names
    assert len(ERRORS) > 40


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_no_problem_title_looks_like_a_class_name(cls: type[CardsvcError]) -> None:
    exc = cls.__new__(cls)  # the title depends on the class and its code only
    _status, title = status_and_title(exc)
    assert not CLASS_NAME.search(title), title
    assert title[0].isupper() and not title.endswith(".")


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("IllegalTransitionError", 409),
        ("PersonNotFoundError", 404),
        ("ActivationError", 422),
        ("ActivationLockedError", 403),  # a subclass that changes its parent's kind
        ("DeviceProofError", 401),
        ("TransactionError", 422),
        ("TransactionConflictError", 409),
        ("RateLimitedError", 429),
        ("SharedStoreUnavailableError", 503),
        ("InvalidClientError", 401),
        ("OAuthError", 400),
        ("ProofRangeError", 400),
        ("CardsvcError", 500),
    ],
)
def test_the_status_comes_from_the_kind(name: str, status: int) -> None:
    (cls,) = [c for c in ERRORS if c.__name__ == name]
    assert status_and_title(cls.__new__(cls))[0] == status


def test_kinds_map_to_distinct_statuses() -> None:
    statuses = [status for status, _title in KINDS.values()]
    assert len(set(statuses)) == len(statuses)


def test_an_illegal_transition_reads_as_words(client: TestClient, services: Services) -> None:
    """Over HTTP: the title a person reads, the stable type, the data fields."""
    card = issue(client, services, enrol(client, services)["id"])
    pending = client.post(
        f"/v1/cards/{card['card_number']}/reissue",
        json={"reason": "not yet written"},
        headers=bearer(services),
    )
    body = assert_problem(pending, 409)
    assert body["title"] == "Not allowed in the card's current state"
    assert body["type"].endswith("/illegal-transition") and body["action"] == "reissue"
