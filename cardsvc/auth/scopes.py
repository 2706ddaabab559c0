"""Scopes every endpoint checks, the roles that bundle them for operators, and what each
kind of client may hold at most (the README's "Who may call what" is this table)."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType

from cardsvc.db.states import ClientKind, Role


class Scope(StrEnum):
    PERSONS_READ = "persons:read"
    PERSONS_WRITE = "persons:write"
    CARDS_READ = "cards:read"
    CARDS_WRITE = "cards:write"  # issue, lifecycle changes
    CARDS_PERSONALIZE = "cards:personalize"  # counter terminals writing blank chips
    AUDIT_READ = "audit:read"
    CLIENTS_ADMIN = "clients:admin"  # create operators and machine clients
    VERIFY = "verify"  # online verification of e-card QR tokens (counters, partners)
    ENTITLEMENTS_READ = "entitlements:read"
    ENTITLEMENTS_WRITE = "entitlements:write"  # create and import benefit entitlements
    TRANSACTIONS_READ = "transactions:read"
    TRANSACTIONS_WRITE = "transactions:write"  # counter terminals submitting transactions
    TRANSACTIONS_REVIEW = "transactions:review"  # conflicts and held forks of offline sync


ROLE_SCOPES = MappingProxyType(
    {
        Role.ADMIN: frozenset(Scope),
        Role.CLERK: frozenset(
            {
                Scope.PERSONS_READ,
                Scope.PERSONS_WRITE,
                Scope.CARDS_READ,
                Scope.CARDS_WRITE,
                Scope.CARDS_PERSONALIZE,
                Scope.ENTITLEMENTS_READ,
                Scope.TRANSACTIONS_READ,
            }
        ),
        Role.AUDITOR: frozenset(
            {
                Scope.PERSONS_READ,
                Scope.CARDS_READ,
                Scope.AUDIT_READ,
                Scope.ENTITLEMENTS_READ,
                Scope.TRANSACTIONS_READ,
                Scope.TRANSACTIONS_REVIEW,
            }
        ),
    }
)

#: What a machine client may hold at most; operators get theirs from their role. A counter
#: terminal personalises cards, activates e-cards at the counter, pays out open
#: entitlements and verifies; a partner only verifies (the bundle it also needs is
#: public). Neither reads the registry: a status-list index linked to a card would undo
#: the random-index privacy of the status lists.
MACHINE_SCOPES = MappingProxyType(
    {
        ClientKind.TERMINAL: frozenset(
            {Scope.CARDS_PERSONALIZE, Scope.TRANSACTIONS_WRITE, Scope.VERIFY}
        ),
        ClientKind.PARTNER: frozenset({Scope.VERIFY}),
    }
)


def allowed_scopes(kind: str, role: Role | None = None) -> frozenset[str]:
    """The most a client of ``kind`` (an operator: of ``role``, or of any role when not
    known) may hold. Stored scopes and the scopes of a token are cut to this set, so a
    row or a token written under an older, wider table gains nothing from it."""
    try:
        client_kind = ClientKind(kind)
    except ValueError:  # not a kind this issuer knows: nothing
        return frozenset()
    if client_kind is ClientKind.OPERATOR:
        held = ROLE_SCOPES[role] if role is not None else frozenset(Scope)
    else:
        held = MACHINE_SCOPES[client_kind]
    return frozenset(s.value for s in held)
