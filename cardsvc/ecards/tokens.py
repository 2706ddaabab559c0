"""What a bound phone asks for with a device proof: QR tokens and offline credentials.

Each request carries a device proof (:mod:`cardsvc.ecards.proofs`) signed by the bound
device key over a fresh server nonce; tokens and credentials are refused unless the
card and the e-card are valid right now.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime

from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.carddoc import CHINA_TZ
from cardsvc.core.credential import (
    CompactCredential,
    compressed_point,
    encode_compact_credential,
)
from cardsvc.core.keys import KeyPurpose, VerifyingKey
from cardsvc.core.qrtoken import (
    PURPOSE_ATTRIBUTES,
    Attribute,
    Purpose,
    QrToken,
    encode_qr_token,
)
from cardsvc.core.statuslist import Status
from cardsvc.ecards.errors import ECardInactiveError, ECardNotFoundError
from cardsvc.ecards.policy import ECardPolicy
from cardsvc.ecards.proofs import Sealer, new_nonce, proof_key, verify_device_proof
from cardsvc.ecards.views import ECardDirectory, ECardView
from cardsvc.keystore.service import KeyService
from cardsvc.replay import ReplayCache


@dataclass(frozen=True, kw_only=True)
class Minted:
    token: str
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True, kw_only=True)
class OfflineCredentials:
    """Compact credentials, one per purpose, for device-bound offline QR codes."""

    credentials: Mapping[Purpose, bytes]
    expires_at: datetime


class TokenService:
    """Server nonces, device-proof checks, QR tokens and offline credentials."""

    def __init__(
        self,
        keys: KeyService,
        directory: ECardDirectory,
        replay: ReplayCache,
        policy: ECardPolicy,
        *,
        sealer: Sealer,
        issuer: str,
    ) -> None:
        self._keys = keys
        self._directory = directory
        self.replay = replay
        self.policy = policy
        self.sealer = sealer
        self._issuer = issuer
        # Stands in for the device key of an e-card that does not exist (see proven).
        self._nobody = VerifyingKey(public_key=ec.generate_private_key(ec.SECP256R1()).public_key())

    def nonce(self, *, now: datetime) -> str:
        return new_nonce(self.sealer, now=now)

    def proven(
        self, ecard_id: uuid.UUID, proof: str | None, *, htm: str, htu: str, now: datetime
    ) -> ECardView:
        """The e-card ``ecard_id``, for the holder whose bound device made ``proof``.

        An unknown id fails exactly as a real e-card does for a proof made by another
        device (DeviceProofError, 401): its proof is checked against a key nobody holds,
        so without the device no one learns whether an e-card id exists.
        """
        try:
            view = self._directory.get(ecard_id, now=now)
        except ECardNotFoundError:
            self._check(self._nobody, proof, htm=htm, htu=htu, now=now)
            raise AssertionError("unreachable: no proof verifies for a key nobody holds") from None
        self.check_proof(view, proof, htm=htm, htu=htu, now=now)
        return view

    def bound_to_proof(
        self, proof: str | None, *, htm: str, htu: str, now: datetime
    ) -> ECardView:
        """The active e-card bound to the key that made ``proof`` (a wallet that was
        activated at a counter learns its e-card this way).

        The proof is checked in full either way: against the bound key when there is an
        e-card, else against the key it names, so only the key's holder learns whether
        it is bound (ECardNotFoundError, 404, after a good proof).
        """
        named = proof_key(proof)
        view = self._directory.active_for_device(named.kid, now=now)
        self._check(view.device_key if view is not None else named, proof,
                    htm=htm, htu=htu, now=now)  # fmt: skip
        if view is None:
            raise ECardNotFoundError("no active e-card is bound to this device key")
        return view

    def check_proof(
        self, view: ECardView, proof: str | None, *, htm: str, htu: str, now: datetime
    ) -> None:
        self._check(view.device_key, proof, htm=htm, htu=htu, now=now)

    def _check(
        self, key: VerifyingKey, proof: str | None, *, htm: str, htu: str, now: datetime
    ) -> None:
        verify_device_proof(
            proof,
            key=key,
            htm=htm,
            htu=htu,
            now=now,
            max_age=self.policy.proof_max_age,
            sealer=self.sealer,
            replay=self.replay,
        )

    def mint(
        self,
        view: ECardView,
        purpose: Purpose,
        *,
        now: datetime,
        lifetime: timedelta | None = None,
        period: timedelta | None = None,
    ) -> list[Minted]:
        """QR tokens for ``purpose``: one, or consecutive windows covering ``period``.

        Refused unless both the card and the e-card are valid right now.
        """
        self._require_valid(view)
        window = int((lifetime or self.policy.token_lifetime).total_seconds())
        count = 1 if period is None else max(1, -(-int(period.total_seconds()) // window))
        allowed = PURPOSE_ATTRIBUTES[purpose]
        attrs = {a: v for a, v in view.attributes.items() if a in allowed}
        signer = self._keys.signer(KeyPurpose.ECARD, now=now)
        start = int(now.timestamp())
        shard, idx = view.status
        out = []
        for i in range(count):
            begins = datetime.fromtimestamp(start + i * window, UTC)
            ends = begins + timedelta(seconds=window)
            token = QrToken(
                issuer=self._issuer,
                purpose=purpose,
                ecard_ref=view.ref,
                jti=secrets.token_bytes(8),
                issued_at=begins,
                expires_at=ends,
                status_shard=shard,
                status_idx=idx,
                attributes=attrs,
            )
            out.append(
                Minted(token=encode_qr_token(token, signer), valid_from=begins, valid_until=ends)
            )
        return out

    def offline_credentials(
        self, view: ECardView, *, now: datetime, purposes: Iterable[Purpose] | None = None
    ) -> OfflineCredentials:
        """Compact credentials for ``purposes`` (default all), bound to the device key.

        The phone wraps one with its device key into an ``SSC2:`` QR code when neither it
        nor the verifier is online (:mod:`cardsvc.core.devicebound`). Each credential
        carries only its purpose's attributes, without the photo reference (no use to a
        verifier without a network), and lives ``offline_credential_lifetime``, at most
        until the card's expiry. Refused unless the card and the e-card are valid.
        """
        self._require_valid(view)
        until = datetime.fromtimestamp(
            int((now + self.policy.offline_credential_lifetime).timestamp()), UTC
        )
        if view.card_expiry is not None:
            card_end = datetime.combine(view.card_expiry + timedelta(days=1), dtime(0), CHINA_TZ)
            until = min(until, card_end.astimezone(UTC))
        signer = self._keys.signer(KeyPurpose.ECARD, now=now)
        shard, idx = view.status
        credentials = {}
        for purpose in Purpose if purposes is None else dict.fromkeys(purposes):
            allowed = PURPOSE_ATTRIBUTES[purpose] - {Attribute.PHOTO_REF}
            credential = CompactCredential(
                issuer=self._issuer,
                purpose=purpose,
                ecard_ref=view.ref,
                status_shard=shard,
                status_idx=idx,
                device_point=compressed_point(view.device_key),
                expires_at=until,
                attributes={a: v for a, v in view.attributes.items() if a in allowed},
            )
            credentials[purpose] = encode_compact_credential(credential, signer)
        return OfflineCredentials(credentials=credentials, expires_at=until)

    def _require_valid(self, view: ECardView) -> None:
        card_status, ecard_status = self._directory.live_status(view)
        if card_status is not Status.VALID or ecard_status is not Status.VALID:
            raise ECardInactiveError(
                "the e-card or its card is not valid",
                card_status=card_status.name.lower(),
                ecard_status=ecard_status.name.lower(),
            )
