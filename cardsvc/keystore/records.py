"""Key metadata: what a key is for and when it may sign and be verified."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cardsvc.core.keys import KeyPurpose, VerifyingKey


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _parse_dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("timestamp must be an ISO 8601 string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp must carry a timezone")
    return parsed.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class KeyRecord:
    """One key's public half and its schedule.

    ``activates_at``: first moment the key may sign (published before that).
    ``retires_at``: the key signs nothing from then on (``None`` while current).
    ``verify_until``: the key leaves the trust list after this (``None`` while current).
    """

    kid: str
    purpose: KeyPurpose
    key: VerifyingKey
    created_at: datetime
    activates_at: datetime
    retires_at: datetime | None = None
    verify_until: datetime | None = None

    def may_sign(self, at: datetime) -> bool:
        return self.activates_at <= at and (self.retires_at is None or at < self.retires_at)

    def verifiable(self, at: datetime) -> bool:
        return self.verify_until is None or at <= self.verify_until

    def retired(self, *, retires_at: datetime, verify_until: datetime) -> KeyRecord:
        return replace(self, retires_at=retires_at, verify_until=verify_until)

    def to_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "purpose": self.purpose.value,
            "jwk": self.key.jwk(),
            "created_at": _iso(self.created_at),
            "activates_at": _iso(self.activates_at),
            "retires_at": _iso(self.retires_at),
            "verify_until": _iso(self.verify_until),
        }

    @classmethod
    def from_json(cls, obj: Any) -> KeyRecord:
        """Parse one index entry; raises ``ValueError``/``KeyError``/``TypeError`` on junk."""
        key = VerifyingKey.from_jwk(obj["jwk"])
        if obj["kid"] != key.kid:
            raise ValueError(f"kid {obj['kid']!r} is not the thumbprint of its key")
        created_at = _parse_dt(obj["created_at"])
        activates_at = _parse_dt(obj["activates_at"])
        if created_at is None or activates_at is None:
            raise ValueError("created_at and activates_at are required")
        return cls(
            kid=key.kid,
            purpose=KeyPurpose(obj["purpose"]),
            key=key,
            created_at=created_at,
            activates_at=activates_at,
            retires_at=_parse_dt(obj.get("retires_at")),
            verify_until=_parse_dt(obj.get("verify_until")),
        )
