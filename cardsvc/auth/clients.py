"""The client registry and the token endpoint's logic (OAuth2 client credentials).

Every caller is a client with a registered public key: operators (a role gives their
scopes), counter terminals and partners (scopes given at registration). A client proves
itself with a ``private_key_jwt`` assertion (RFC 7523) and receives a short-lived access
token carrying the scopes it asked for, within those it holds.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cardsvc.auth.partners import DEFAULT_RATE_LIMIT, PartnerPolicy
from cardsvc.auth.scopes import allowed_scopes
from cardsvc.auth.suspensions import Suspensions
from cardsvc.auth.tokens import AuthenticationError, issue_access_token
from cardsvc.core.assertion import unverified_client_id, verify_client_assertion
from cardsvc.core.errors import CoreError
from cardsvc.core.keys import VerifyingKey
from cardsvc.db.models import ClientRow, PartnerRow

# ClientKind is defined beside the table (its kind column holds it), named here too.
from cardsvc.db.states import ClientKind as ClientKind
from cardsvc.db.states import ClientStatus, Role
from cardsvc.errors import CardsvcError, Malformed, NotFound, Unauthenticated
from cardsvc.keystore.service import KeyService
from cardsvc.replay import ReplayCache

ACCESS_TOKEN_LIFETIME = timedelta(minutes=10)


class OAuthError(Malformed, CardsvcError):
    """A token request refused, with the RFC 6749 ``error`` code in the problem document."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.code = error.replace("_", "-")
        self.fields = {"error": error, "error_description": detail}


class InvalidClientError(Unauthenticated, OAuthError):
    """RFC 6749 ``invalid_client``: the client could not be authenticated."""

    def __init__(self, detail: str) -> None:
        super().__init__("invalid_client", detail)


class ClientNotFoundError(NotFound, CardsvcError):
    code = "client-not-found"

    def __init__(self, client_id: str) -> None:
        super().__init__(f"no client {client_id!r}")
        self.client_id = client_id


@dataclass(frozen=True, kw_only=True)
class Client:
    client_id: str
    kind: ClientKind
    display_name: str
    role: Role | None
    scopes: frozenset[str]
    key: VerifyingKey
    active: bool
    #: A partner's allowed purposes and rate limit; ``None`` for other kinds.
    partner: PartnerPolicy | None = None

    @classmethod
    def from_row(cls, row: ClientRow, partner: PartnerRow | None = None) -> Client:
        return cls(
            client_id=row.client_id,
            kind=row.kind,
            display_name=row.display_name,
            role=row.role,
            # Cut to what the kind may hold now: a row written under a wider table
            # (partners once held cards:read) keeps nothing beyond it.
            scopes=frozenset(row.scopes.split()) & allowed_scopes(row.kind, row.role),
            key=VerifyingKey.from_jwk(json.loads(row.jwk)),
            active=row.status is ClientStatus.ACTIVE,
            partner=(
                PartnerPolicy(
                    purposes=frozenset(partner.purposes.split()),
                    rate_limit=partner.rate_limit_per_minute,
                )
                if partner is not None
                else None
            ),
        )


@dataclass(frozen=True, kw_only=True)
class TokenResponse:
    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 token type, not a secret


@dataclass(frozen=True, kw_only=True)
class VerifiedAssertion:
    """A client assertion whose signature, audience and lifetime checked out."""

    client: Client
    jti: str
    exp: float


class ClientService:
    """Registers clients and exchanges their assertions for access tokens."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyService,
        replay: ReplayCache,
        *,
        issuer: str,
        leeway: timedelta,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._replay = replay
        self._issuer = issuer
        self._leeway = leeway
        #: Checked on every authenticated request: a suspension ends tokens already issued.
        self.suspensions = Suspensions(engine)

    @property
    def token_endpoint(self) -> str:
        return f"{self._issuer}/v1/oauth/token"

    def register(
        self,
        *,
        kind: ClientKind,
        display_name: str,
        jwk: Mapping[str, object],
        created_by: str,
        now: datetime,
        role: Role | None = None,
        scopes: frozenset[str] | None = None,
        purposes: frozenset[str] | None = None,
        rate_limit: int | None = None,
    ) -> Client:
        """Register a client with its public key (the private key never reaches us).

        A partner needs ``purposes`` (what it may verify) and may get a ``rate_limit``
        (verify requests per minute, default 600); other kinds take neither.
        """
        key = VerifyingKey.from_jwk(jwk)
        policy: PartnerPolicy | None = None
        if kind is ClientKind.PARTNER:
            policy = PartnerPolicy(
                purposes=frozenset(purposes or ()),
                rate_limit=DEFAULT_RATE_LIMIT if rate_limit is None else rate_limit,
            )
        elif purposes is not None or rate_limit is not None:
            raise CardsvcError("only partners have purposes and a rate limit")
        granted: frozenset[str]
        if kind is ClientKind.OPERATOR:
            if role is None:
                raise CardsvcError("an operator needs a role: admin, clerk or auditor")
            granted = allowed_scopes(kind, role)
        else:
            if role is not None:
                raise CardsvcError("only operators have roles; give machine clients scopes")
            allowed = allowed_scopes(kind)
            granted = allowed if scopes is None else frozenset(scopes)
            if not granted <= allowed:
                extra = ", ".join(sorted(granted - allowed))
                raise CardsvcError(f"a {kind.value} may not hold {extra}")
        row = ClientRow(
            client_id=f"{kind.value[:4]}-{secrets.token_hex(6)}",
            kind=kind,
            display_name=display_name,
            role=role,
            scopes=" ".join(sorted(granted)),
            jwk=json.dumps({k: v for k, v in key.jwk().items() if k in ("kty", "crv", "x", "y")}),
            status=ClientStatus.ACTIVE,
            created_at=now,
            created_by=created_by,
        )
        partner = (
            PartnerRow(
                client_id=row.client_id,
                purposes=" ".join(sorted(policy.purposes)),
                rate_limit_per_minute=policy.rate_limit,
                updated_at=now,
            )
            if policy is not None
            else None
        )
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            session.add(row)
            if partner is not None:
                session.flush()  # the client row first: the partner row refers to it
                session.add(partner)
        return Client.from_row(row, partner)

    def get(self, client_id: str) -> Client:
        with Session(self._engine) as session:
            row = session.get(ClientRow, client_id)
            if row is None:
                raise ClientNotFoundError(client_id)
            return Client.from_row(row, session.get(PartnerRow, client_id))

    def caller(self, subject: str) -> Client:
        """The registered client an authenticated access token names.

        A validly signed token whose subject is no registered client (made by hand, or
        its client removed) is no credential: :class:`AuthenticationError` (401), the
        answer any unknown credential gets, never a "no such client" 404.
        """
        try:
            return self.get(subject)
        except ClientNotFoundError:
            raise AuthenticationError("the access token names no registered client") from None

    def list(self) -> list[Client]:
        with Session(self._engine) as session:
            rows = session.scalars(select(ClientRow).order_by(ClientRow.created_at)).all()
            partners = {p.client_id: p for p in session.scalars(select(PartnerRow))}
            return [Client.from_row(row, partners.get(row.client_id)) for row in rows]

    def set_active(self, client_id: str, *, active: bool) -> Client:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            row = session.get(ClientRow, client_id)
            if row is None:
                raise ClientNotFoundError(client_id)
            row.status = ClientStatus.ACTIVE if active else ClientStatus.SUSPENDED
            client = Client.from_row(row, session.get(PartnerRow, client_id))
        self.suspensions.forget()
        return client

    def exchange(
        self,
        *,
        grant_type: str | None,
        assertion_type: str | None,
        assertion: str | None,
        scope: str | None,
        now: datetime,
    ) -> TokenResponse:
        """The client credentials grant with ``private_key_jwt`` (RFC 6749 4.4, RFC 7523):
        :meth:`authenticate` then :meth:`grant` (the token endpoint counts the client's
        rate limit between the two)."""
        verified = self.authenticate(
            grant_type=grant_type, assertion_type=assertion_type, assertion=assertion, now=now
        )
        return self.grant(verified, scope=scope, now=now)

    def authenticate(
        self,
        *,
        grant_type: str | None,
        assertion_type: str | None,
        assertion: str | None,
        now: datetime,
    ) -> VerifiedAssertion:
        """The client a token request's assertion proves, consuming nothing (its ``jti``
        is recorded by :meth:`grant`), or ``invalid_client``."""
        from cardsvc.core.assertion import ASSERTION_TYPE

        if grant_type != "client_credentials":
            raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials")
        if assertion_type != ASSERTION_TYPE or not assertion:
            raise InvalidClientError(
                f"authenticate with client_assertion_type {ASSERTION_TYPE} and a client_assertion"
            )
        try:
            client = self.get(unverified_client_id(assertion))
            claims = verify_client_assertion(
                assertion,
                client_id=client.client_id,
                key=client.key,
                audiences=frozenset({self.token_endpoint, self._issuer}),
                now=now,
                leeway=self._leeway,
            )
        except (CoreError, ClientNotFoundError) as exc:
            # One answer for unknown client and bad signature: no oracle for client ids.
            raise InvalidClientError(f"client authentication failed: {exc}") from None
        if not client.active:
            raise InvalidClientError("this client is suspended")
        return VerifiedAssertion(client=client, jti=str(claims["jti"]), exp=float(claims["exp"]))

    def grant(self, verified: VerifiedAssertion, *, scope: str | None, now: datetime) -> (
        TokenResponse
    ):  # fmt: skip
        """An access token for a verified assertion, used once (``invalid_client`` on a
        replay), with the scopes asked for within those the client holds."""
        client = verified.client
        ttl = max(1, int(verified.exp - now.timestamp() + self._leeway.total_seconds()))
        if not self._replay.first_use(
            f"assertion:{client.client_id}:{verified.jti}", ttl_seconds=ttl
        ):
            raise InvalidClientError("client_assertion was already used")
        requested = frozenset(scope.split()) if scope else client.scopes
        if not requested <= client.scopes:
            extra = ", ".join(sorted(requested - client.scopes))
            raise OAuthError("invalid_scope", f"this client may not have {extra}")
        token = issue_access_token(
            self._keys,
            issuer=self._issuer,
            subject=client.client_id,
            kind=client.kind.value,
            scopes=requested,
            now=now,
            lifetime=ACCESS_TOKEN_LIFETIME,
            purposes=client.partner.purposes if client.partner else None,
            rate_limit=client.partner.rate_limit if client.partner else None,
        )
        return TokenResponse(
            access_token=token,
            expires_in=int(ACCESS_TOKEN_LIFETIME.total_seconds()),
            scope=" ".join(sorted(requested)),
        )
