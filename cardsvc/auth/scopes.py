"""Scopes every endpoint checks, and the roles that bundle them for operators."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType

from cardsvc.db.states import Role


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
