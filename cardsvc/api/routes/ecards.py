"""E-cards: activation (code or counter), device-bound token requests, online verify."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Header, Path, Request, Response, Security
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep, source_address
from cardsvc.api.observe import counted_verify
from cardsvc.api.schemas import AUTH, PurposeName, problems
from cardsvc.api.security import require
from cardsvc.audit.events import Actor
from cardsvc.auth.scopes import Scope
from cardsvc.auth.tokens import Principal
from cardsvc.core.errors import CoreError
from cardsvc.core.keys import b64url_decode, b64url_encode
from cardsvc.core.qrtoken import Attribute, Purpose
from cardsvc.core.statuslist import Status
from cardsvc.ecards.activation import Activation
from cardsvc.ecards.errors import ActivationError, ECardInactiveError
from cardsvc.ecards.render import render
from cardsvc.ecards.views import ECardView
from cardsvc.ratelimit import admit
from cardsvc.registry.lifecycle import OperatorAction
from cardsvc.services import Services

router = APIRouter(tags=["e-cards"])

CardsRead = Annotated[Principal, Security(require(Scope.CARDS_READ))]
CardsWrite = Annotated[Principal, Security(require(Scope.CARDS_WRITE))]
Terminal = Annotated[Principal, Security(require(Scope.CARDS_PERSONALIZE))]
Verifier = Annotated[Principal, Security(require(Scope.VERIFY))]
DPoP = Annotated[str | None, Header(alias="DPoP", description="Device proof (dpop+jwt)")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonECardOut(BaseModel):
    ecard_id: uuid.UUID
    card_number: str = Field(description="The physical card it follows")
    state: str = Field(description="active, replaced or revoked")
    activated_via: str = Field(description="code or counter")
    device_kid: str = Field(description="Thumbprint of the phone's key")
    created_at: datetime
    created_by: str


class PersonECardsOut(BaseModel):
    items: list[PersonECardOut]


class CodeOut(BaseModel):
    code: str = Field(description="Shown once; stored only as a hash")
    expires_at: datetime
    attempts: int = Field(description="Wrong entries allowed before the code locks")


class CodeActivation(_Request):
    citizen_id: str = Field(min_length=1, max_length=32)
    code: str = Field(min_length=1, max_length=32)
    device_jwk: dict[str, Any] = Field(description="The phone's ES256 public key (JWK)")


class ChallengeRequest(_Request):
    card_number: str = Field(min_length=1, max_length=32)


class ChallengeOut(BaseModel):
    challenge: str = Field(description="Return it with the chip's answer")
    nonce: str = Field(description="16 bytes, base64url: relay to the chip (INTERNAL AUTHENTICATE)")


class CounterActivation(_Request):
    challenge: str = Field(min_length=1, max_length=256)
    chip_signature: str = Field(min_length=1, max_length=128, description="r||s, base64url")
    pin_verified: bool = Field(description="The terminal verified the holder's PIN on the card")
    device_jwk: dict[str, Any]


class StatusRef(BaseModel):
    idx: int
    uri: str


class ECardOut(BaseModel):
    ecard_id: uuid.UUID
    ecard_ref: str
    card_number: str
    holder_name: str
    status: StatusRef
    card_status: str
    ecard_status: str


class ActivationOut(ECardOut):
    credential: str = Field(description="ssc-ecard+jwt signed by the issuer's ecard key")


class TokenRequest(_Request):
    purpose: PurposeName
    offline: bool = Field(
        default=False, description="A batch of consecutive windows covering the offline period"
    )
    format: Literal["text", "png", "svg"] = Field(
        default="text", description="png/svg: the QR image of one token"
    )


class LossReport(_Request):
    reason: str = Field(
        default="reported lost by the holder in the e-card wallet", min_length=1, max_length=200
    )


class TokenOut(BaseModel):
    token: str
    valid_from: datetime
    valid_until: datetime


class TokensOut(BaseModel):
    purpose: str
    tokens: list[TokenOut]


class VerifyRequest(_Request):
    token: str = Field(min_length=1, max_length=16384)
    purpose: PurposeName = Field(description="What the caller checks; must be the token's")


class VerifyOut(BaseModel):
    valid: Literal[True] = True
    purpose: str
    claims: dict[str, Any]


def _ecard_out(services: Services, view: ECardView) -> dict[str, Any]:
    card_status, ecard_status = services.ecards.live_status(view)
    shard, idx = view.status
    return {
        "ecard_id": view.id,
        "ecard_ref": b64url_encode(view.ref),
        "card_number": view.card_number,
        "holder_name": str(view.attributes.get(Attribute.NAME, "")),
        "status": StatusRef(idx=idx, uri=services.status.uri(shard)),
        "card_status": card_status.name.lower(),
        "ecard_status": ecard_status.name.lower(),
    }


def _id_key(citizen_id: str) -> str:
    """The rate-limit key of an ID number: hashed, so Redis never holds ID numbers."""
    return hashlib.sha256(citizen_id.strip().upper().encode()).hexdigest()[:32]


def _activation_out(services: Services, activation: Activation) -> ActivationOut:
    return ActivationOut(**_ecard_out(services, activation.ecard), credential=activation.credential)


@router.get(
    "/v1/persons/{person_id}/ecards",
    response_model=PersonECardsOut,
    responses=problems(*AUTH, 404),
    summary="A person's e-cards, newest first (the bound phone by key thumbprint only)",
)
async def person_ecards(
    person_id: uuid.UUID, _principal: CardsRead, services: ServicesDep
) -> PersonECardsOut:
    await run_in_threadpool(services.persons.get, person_id)
    rows = await run_in_threadpool(services.ecards.of_person, person_id)
    return PersonECardsOut(items=[
        PersonECardOut(ecard_id=e.id, card_number=number, state=e.state.value,
                       activated_via=e.activated_via.value, device_kid=e.device_kid,
                       created_at=e.created_at, created_by=e.created_by)
        for e, number in rows
    ])  # fmt: skip


@router.post(
    "/v1/persons/{person_id}/ecard-activation-codes",
    status_code=201,
    response_model=CodeOut,
    responses=problems(*AUTH, 404, 409),
    summary="Issue a one-time e-card activation code (older open codes end)",
)
async def issue_code(person_id: uuid.UUID, principal: CardsWrite, services: ServicesDep) -> CodeOut:
    issued = await run_in_threadpool(
        lambda: services.ecard_activation.issue_code(
            person_id, actor=principal.actor, now=services.clock()
        )
    )
    return CodeOut(code=issued.code, expires_at=issued.expires_at, attempts=issued.attempts)


@router.post(
    "/v1/ecards/activations",
    status_code=201,
    response_model=ActivationOut,
    responses=problems(403, 409, 413, 422, 429),
    summary="Activate an e-card on a phone with a one-time code (binds the device key)",
)
async def activate_with_code(
    body: CodeActivation, request: Request, services: ServicesDep
) -> ActivationOut:
    """Rate limited per source address and per citizen ID number (``RateLimits``), before
    the code is checked: beside the code's own lock after a few wrong tries, this bounds
    the guessing (and the scrypt work) an address or an ID number can cause."""
    limits, limiter = services.settings.rate_limits, services.rate_limiter
    await admit(
        limiter,
        f"activation-address:{source_address(request)}",
        limit=limits.activation_per_address,
        counted_per="address",
    )
    await admit(
        limiter,
        f"activation-id:{_id_key(body.citizen_id)}",
        limit=limits.activation_per_citizen_id,
        counted_per="citizen ID",
    )
    activation = await run_in_threadpool(
        lambda: services.ecard_activation.activate_with_code(
            body.citizen_id, body.code, body.device_jwk, now=services.clock()
        )
    )
    return _activation_out(services, activation)


@router.post(
    "/v1/ecards/counter-challenges",
    response_model=ChallengeOut,
    responses=problems(*AUTH, 404, 409),
    summary="A nonce for the card's chip, to activate an e-card at a counter",
)
async def counter_challenge(
    body: ChallengeRequest, _principal: Terminal, services: ServicesDep
) -> ChallengeOut:
    challenge, nonce = await run_in_threadpool(
        lambda: services.ecard_activation.counter_challenge(body.card_number, now=services.clock())
    )
    return ChallengeOut(challenge=challenge, nonce=b64url_encode(nonce))


@router.post(
    "/v1/ecards/counter-activations",
    status_code=201,
    response_model=ActivationOut,
    responses=problems(*AUTH, 409, 422, 429),
    summary="Activate an e-card at a counter: the chip's answer and the PIN prove the card",
)
async def activate_at_counter(
    body: CounterActivation, principal: Terminal, services: ServicesDep
) -> ActivationOut:
    """Rate limited per terminal client (``RateLimits.counter_activation_per_client``)."""
    await admit(
        services.rate_limiter,
        f"counter-activation:{principal.subject}",
        limit=services.settings.rate_limits.counter_activation_per_client,
        counted_per="client",
    )
    try:
        signature = b64url_decode(body.chip_signature)
    except CoreError:
        raise ActivationError("chip-signature", "chip_signature is not base64url") from None
    activation = await run_in_threadpool(
        lambda: services.ecard_activation.activate_at_counter(
            body.challenge,
            signature,
            body.device_jwk,
            pin_verified=body.pin_verified,
            actor=principal.actor,
            now=services.clock(),
        )
    )
    return _activation_out(services, activation)


@router.get(
    "/v1/ecards/nonce",
    responses=problems(422),
    summary="A fresh server nonce for the next device proof (also in DPoP-Nonce)",
)
async def nonce(services: ServicesDep, response: Response) -> dict[str, str]:
    value = services.ecard_tokens.nonce(now=services.clock())
    response.headers["DPoP-Nonce"] = value
    response.headers["Cache-Control"] = "no-store"
    return {"nonce": value}


def _htu(services: Services, request: Request) -> str:
    return services.settings.issuer.rstrip("/") + request.url.path


@router.get(
    "/v1/ecards/device-binding",
    response_model=ActivationOut,
    responses=problems(401, 404, 422),
    summary="The active e-card bound to the key that made this device proof, with its credential",
)
async def device_binding(
    request: Request, services: ServicesDep, dpop: DPoP = None
) -> ActivationOut:
    """A wallet activated at a counter (the clerk scanned its key) finds its e-card here:
    404 until the counter has bound the key, then the e-card and its signed credential.
    Only the key's holder can ask (the proof is checked before anything is answered)."""
    now = services.clock()
    htm, htu = request.method, _htu(services, request)
    view = await run_in_threadpool(
        lambda: services.ecard_tokens.bound_to_proof(dpop, htm=htm, htu=htu, now=now)
    )
    credential = await run_in_threadpool(
        lambda: services.ecard_activation.credential(view, now=now)
    )
    return ActivationOut(**_ecard_out(services, view), credential=credential)


async def _proven(
    services: Services, ecard_id: uuid.UUID, proof: str | None, request: Request
) -> ECardView:
    now = services.clock()
    htm, htu = request.method, _htu(services, request)

    # Off the event loop: the proof's one-time jti may be a Redis round trip.
    return await run_in_threadpool(
        lambda: services.ecard_tokens.proven(ecard_id, proof, htm=htm, htu=htu, now=now)
    )


@router.get(
    "/v1/ecards/{ecard_id}",
    response_model=ECardOut,
    responses=problems(401, 404, 422),
    summary="The e-card and its live status (device proof)",
)
async def get_ecard(
    ecard_id: Annotated[uuid.UUID, Path()],
    request: Request,
    services: ServicesDep,
    dpop: DPoP = None,
) -> ECardOut:
    view = await _proven(services, ecard_id, dpop, request)
    return ECardOut(**_ecard_out(services, view))


@router.post(
    "/v1/ecards/{ecard_id}/tokens",
    response_model=TokensOut,
    responses={
        200: {"content": {"image/png": {}, "image/svg+xml": {}}},
        **problems(401, 404, 409, 422),
    },
    summary="QR tokens for one purpose (device proof): one, or an offline batch",
)
async def mint_tokens(
    ecard_id: Annotated[uuid.UUID, Path()],
    body: TokenRequest,
    request: Request,
    services: ServicesDep,
    dpop: DPoP = None,
) -> Any:
    view = await _proven(services, ecard_id, dpop, request)
    purpose = Purpose[body.purpose.upper()]
    period = services.ecard_tokens.policy.offline_period if body.offline else None
    minted = await run_in_threadpool(
        lambda: services.ecard_tokens.mint(view, purpose, now=services.clock(), period=period)
    )
    services.metrics.minted("qr", body.purpose, len(minted))
    if body.format != "text":
        media = "image/png" if body.format == "png" else "image/svg+xml"
        image = await run_in_threadpool(render, minted[0].token, body.format)
        headers = {
            "Cache-Control": "no-store",
            "X-Token-Valid-Until": minted[0].valid_until.isoformat(),
            # The token itself, percent-encoded (base45 may end in a space, which a header
            # would lose): the wallet page keeps it beside the image.
            "X-Token-Text": quote(minted[0].token, safe=""),
        }
        return Response(content=image, media_type=media, headers=headers)
    return TokensOut(
        purpose=body.purpose,
        tokens=[
            TokenOut(token=m.token, valid_from=m.valid_from, valid_until=m.valid_until)
            for m in minted
        ],
    )


class OfflineCredentialsRequest(_Request):
    purposes: list[PurposeName] | None = Field(
        default=None, min_length=1, description="The purposes wanted; default every purpose"
    )


class OfflineCredentialsOut(BaseModel):
    expires_at: datetime
    credentials: dict[str, str] = Field(
        description="Purpose -> compact credential (COSE_Sign1, base64url) for SSC2: codes"
    )


@router.post(
    "/v1/ecards/{ecard_id}/offline-credentials",
    response_model=OfflineCredentialsOut,
    responses=problems(401, 404, 409, 422),
    summary="Compact credentials for device-bound offline QR codes (device proof)",
)
async def offline_credentials(
    ecard_id: Annotated[uuid.UUID, Path()],
    body: OfflineCredentialsRequest,
    request: Request,
    services: ServicesDep,
    dpop: DPoP = None,
) -> OfflineCredentialsOut:
    """One issuer-signed compact credential per purpose, bound to the e-card's device key.
    The phone wraps one with that key into an ``SSC2:`` QR code for a 30-second slot when
    neither it nor the verifier is online; it renews them before ``expires_at``."""
    view = await _proven(services, ecard_id, dpop, request)
    wanted = [Purpose[name.upper()] for name in body.purposes] if body.purposes else None
    issued = await run_in_threadpool(
        lambda: services.ecard_tokens.offline_credentials(
            view, now=services.clock(), purposes=wanted
        )
    )
    for purpose in issued.credentials:
        services.metrics.minted("offline-credential", purpose.name.lower())
    return OfflineCredentialsOut(
        expires_at=issued.expires_at,
        credentials={p.name.lower(): b64url_encode(c) for p, c in issued.credentials.items()},
    )


@router.post(
    "/v1/ecards/{ecard_id}/loss-report",
    response_model=ECardOut,
    responses=problems(401, 404, 409, 422),
    summary="The holder reports the card lost (device proof): a temporary loss report",
)
async def report_loss(
    ecard_id: Annotated[uuid.UUID, Path()],
    body: LossReport,
    request: Request,
    services: ServicesDep,
    dpop: DPoP = None,
) -> ECardOut:
    """Suspends the card (and so the e-card) as a counter's temporary loss report would;
    it lapses after the configured days or is resumed at a counter. Only the e-card
    currently bound may report: a replaced phone cannot."""
    view = await _proven(services, ecard_id, dpop, request)
    if services.ecards.live_status(view)[1] is Status.INVALID:  # replaced or ended
        raise ECardInactiveError("this e-card is no longer the card's current e-card")
    await run_in_threadpool(
        lambda: services.cards.change(
            view.card_number,
            OperatorAction.REPORT_TEMPORARY_LOSS,
            reason=body.reason,
            actor=Actor(f"ecard:{view.id}"),
            now=services.clock(),
        )
    )
    return ECardOut(**_ecard_out(services, view))


@router.post(
    "/v1/verify",
    response_model=VerifyOut,
    responses=problems(*AUTH, 429),
    summary="Verify an e-card QR token online: the disclosed claims or the failed check",
)
async def verify(body: VerifyRequest, principal: Verifier, request: Request) -> VerifyOut:
    """Checks the trust-list signature, the validity window (bounded leeway), the card's
    and the e-card's live status (in memory) and one-time use of ``jti``. A failure is
    problem+json with ``check`` naming the failed check.

    Served by :class:`cardsvc.api.fastpath.VerifyFastPath` in front of the router; this
    route documents it and answers when the fast path is not installed.
    """
    services: Services = request.app.state.services
    claims = await counted_verify(services, body.token, body.purpose, principal)
    return VerifyOut(purpose=body.purpose, claims=claims)
