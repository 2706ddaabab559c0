"""Request and response models of the registry API (OpenAPI comes from these)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from cardsvc.auth.partners import PURPOSES
from cardsvc.db.models import Card, CardEvent, Person, PersonChange
from cardsvc.registry.lifecycle import CardState, OperatorAction


def _purpose_name(value: str) -> str:
    if value not in PURPOSES:
        raise ValueError(f"one of {', '.join(sorted(PURPOSES))}")
    return value


#: A purpose by its lower-case name (``cardsvc.core.Purpose``), listed in the OpenAPI schema.
PurposeName = Annotated[
    str,
    AfterValidator(_purpose_name),
    WithJsonSchema({"type": "string", "enum": sorted(PURPOSES)}),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


Reason = Field(min_length=1, max_length=500, description="Why: kept in the record")


class Problem(BaseModel):
    """RFC 9457 problem details; some problems add fields (e.g. ``existing``)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem statuses an endpoint may answer."""
    described = {
        400: "Malformed request",
        401: "Missing, invalid or expired access token",
        403: "The token lacks the scope this endpoint needs",
        404: "Not found",
        409: "Conflicts with the current state (duplicate, illegal transition)",
        413: "Request body too large",
        422: "Invalid request content",
        429: "Too many requests: over a rate limit (Retry-After says when to retry)",
    }
    return {
        code: {
            "model": Problem,
            "description": described[code],
            "content": {"application/problem+json": {}},
            **({"headers": {"Retry-After": _RETRY_AFTER}} if code == 429 else {}),
        }
        for code in codes
    }


_RETRY_AFTER = {
    "description": "Seconds until the rate limit's window ends",
    "schema": {"type": "integer", "minimum": 1},
}


AUTH = (401, 403, 413, 422)


# -- persons ------------------------------------------------------------------------


class EnrolRequest(_Request):
    citizen_id: str = Field(
        min_length=1, max_length=32, description="GB 11643 citizen ID number (18 characters)"
    )
    name: str = Field(min_length=1, max_length=64)
    sex: Literal["M", "F"] | None = Field(
        default=None, description="Checked against the ID number; derived from it if omitted"
    )
    birth_date: date | None = Field(
        default=None, description="Checked against the ID number; derived from it if omitted"
    )
    region_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="GB/T 2260 region of residence; defaults to the ID number's region",
    )


class LookupRequest(_Request):
    citizen_id: str = Field(min_length=1, max_length=32)


class NameCorrection(_Request):
    name: str = Field(min_length=1, max_length=64)
    reason: str = Reason


class DeathRecord(_Request):
    died_on: date
    reason: str = Reason


class PersonOut(BaseModel):
    id: uuid.UUID
    citizen_id: str
    name: str
    sex: Literal["M", "F"]
    birth_date: date
    region_code: str
    deceased_on: date | None
    created_at: datetime
    created_by: str
    updated_at: datetime

    @classmethod
    def of(cls, person: Person) -> PersonOut:
        return cls.model_validate(person, from_attributes=True)


class PersonChangeOut(BaseModel):
    id: int
    field: str
    old_value: str | None
    new_value: str | None
    reason: str
    actor: str
    at: datetime

    @classmethod
    def of(cls, change: PersonChange) -> PersonChangeOut:
        return cls.model_validate(change, from_attributes=True)


# -- cards --------------------------------------------------------------------------


class IssueRequest(_Request):
    reason: str = Field(default="new card", min_length=1, max_length=500)


class StatusChange(_Request):
    action: OperatorAction = Field(
        description=(
            "report_temporary_loss (suspends; lapses after the configured days), "
            "resume, report_loss (formal loss: revoked, final), revoke"
        )
    )
    reason: str = Reason


class ReissueRequest(_Request):
    reason: str = Reason


class PersonalizationRequest(_Request):
    chip_jwk: dict[str, Any] = Field(
        description="The chip's public key (EC JWK, crv P-256 or SM2), generated on the card"
    )


class StatusRef(BaseModel):
    idx: int
    uri: str


class AuditReceipt(BaseModel):
    """Where a change sits in the audit log: check it later with ``cardsvc.core.merkle``
    against a signed checkpoint and ``GET /v1/audit/proofs/inclusion``."""

    leaf_index: int
    leaf_hash: str = Field(description="RFC 6962 leaf hash, base64url")
    leaf: str = Field(description="The leaf input (canonical JSON, no personal data), base64url")


class CardOut(BaseModel):
    card_number: str
    person_id: uuid.UUID
    state: CardState
    issue_date: date
    expiry_date: date
    status: StatusRef
    suspended_until: datetime | None
    revocation_reason: str | None
    replaces_card_id: uuid.UUID | None
    personalized: bool
    chip_kid: str | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    audit: AuditReceipt | None = Field(
        default=None, description="Audit log receipt, on the response to an issue or reissue"
    )


def card_out(card: Card, uri: str) -> CardOut:
    return CardOut(
        card_number=card.card_number,
        person_id=card.person_id,
        state=card.state,
        issue_date=card.issue_date,
        expiry_date=card.expiry_date,
        status=StatusRef(idx=card.status_idx, uri=uri),
        suspended_until=card.suspended_until,
        revocation_reason=card.revocation_reason,
        replaces_card_id=card.replaces_card_id,
        personalized=card.document is not None,
        chip_kid=card.chip_kid,
        created_at=card.created_at,
        created_by=card.created_by,
        updated_at=card.updated_at,
    )


class CardEventOut(BaseModel):
    id: int
    action: str
    from_state: str | None
    to_state: str
    reason: str
    actor: str
    at: datetime

    @classmethod
    def of(cls, event: CardEvent) -> CardEventOut:
        return cls.model_validate(event, from_attributes=True)


class PersonalizationOut(BaseModel):
    card: CardOut
    document: str = Field(description="The signed card document (compact JWS) to write")
    audit: AuditReceipt | None = Field(
        default=None, description="Audit log receipt of the chip binding"
    )


class DocumentOut(BaseModel):
    card_number: str
    document: str


class ShardOut(BaseModel):
    shard: int
    uri: str
