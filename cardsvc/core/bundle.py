"""The verifier bundle: one signed, versioned file a partner needs to verify offline.

A bundle is a compact JWS (``typ`` ``verifier-bundle+jwt``, ES256 or SM2SM3) signed by a
``status-list`` key listed in the trust list the bundle itself carries. Its claims::

    {
      "iss": "https://issuer.example",       # the issuer
      "ver": 42,                             # bundle version, monotonic per issuer
      "iat": 1790000000,                     # the issuer's signed time
      "exp": 1790086400,
      "base": null,                          # null: full bundle; N: delta since version N
      "trust_list": "<trustlist+jwt compact JWS>",
      "status_lists": {"<shard uri>": "<statuslist+jwt compact JWS>", ...},
      "status_patches": {"<shard uri>": {"entries": "...", "sha256": "..."}, ...}
    }

A *full* bundle (``base`` null) holds every shard the partner asked for; a *delta*
(``base`` N) holds only the shards that changed since version N and is applied onto the
bundle of version N. The trust list is always included in full (it is small, and the
bundle's own signing key is looked up in it).

A delta carries a changed shard either whole (its signed token in ``status_lists``) or,
when few of its entries changed, as an *entry patch* in the optional ``status_patches``
(:mod:`cardsvc.core.statuspatch`): the changed entries and the SHA-256 of the list they
produce. A patch is covered by the bundle's signature, not by a status list token: it
applies only to the shard held at version N, and the rebuilt list must match the digest
(``patch-digest``), so the result is exactly what the issuer held at the new version. A
patched shard's :class:`StatusListToken` is synthesised with the bundle's ``iat``,
``exp`` and ``kid``; it is as fresh as the bundle. A shard is in at most one of the two.

:func:`verify_bundle` checks, in order: size and shape, the trust list against the pinned
root key, the bundle signature with a ``status-list`` key from that trust list, the
bundle's times, rollback against the previous bundle, every status list token (signature
by a listed ``status-list`` key, times, ``sub`` equal to its shard URI), and for a delta
that it applies to the previous bundle. Each failure raises :class:`VerificationError`
whose ``check`` names it (see :func:`verify_bundle`); malformed input raises
:class:`DecodeError`. A caller keeps its previous good bundle when verification fails.

Status list tokens carried over from the previous bundle by a delta are not re-verified;
their ``exp`` is in :attr:`Bundle.status_lists` for the caller's freshness policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cardsvc.core.errors import DecodeError, InputTooLargeError, VerificationError, shown
from cardsvc.core.jws import check_times, strict_json_object, verify_jws
from cardsvc.core.keys import KeyPurpose, VerifyingKey, b64url_decode, b64url_encode
from cardsvc.core.signing import Signer, sign_jws
from cardsvc.core.statuslist import (
    MAX_ENTRIES,
    MAX_JWT_SIZE,
    StatusListToken,
    verify_status_list_token,
)
from cardsvc.core.statuspatch import StatusPatchError, apply_patch, list_digest, parse_patch
from cardsvc.core.trustlist import TrustList

__all__ = [
    "BUNDLE_TYP",
    "MAX_BUNDLE_SIZE",
    "Bundle",
    "StatusPatchError",
    "encode_bundle",
    "verify_bundle",
]

#: The JOSE ``typ`` header of a verifier bundle.
BUNDLE_TYP: Final = "verifier-bundle+jwt"

#: Default upper bound on a bundle, in characters, checked before anything is decoded.
#: Ten 2**20-entry shards at 1% revoked are about 1.3 MB; raise it for larger issuers.
MAX_BUNDLE_SIZE: Final = 256 * 1024 * 1024

_FORMAT: Final = "verifier bundle"


@dataclass(frozen=True, kw_only=True)
class Bundle:
    """A verified bundle; after a delta, the previous bundle with the delta applied.

    ``base`` is the version the verified token was a delta from (``None`` for a full
    bundle). ``status_lists`` maps shard URI to its verified Status List Token; the URIs
    in ``patched`` were rebuilt from the held list by this bundle's entry patches.
    """

    issuer: str
    version: int
    issued_at: datetime
    expires_at: datetime
    base: int | None
    trust_list: TrustList
    status_lists: dict[str, StatusListToken]
    patched: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, object]:
        """A summary of what was verified (the ``expected.result`` of bundle vectors)."""
        return {
            "iss": self.issuer,
            "ver": self.version,
            "iat": int(self.issued_at.timestamp()),
            "exp": int(self.expires_at.timestamp()),
            "base": self.base,
            "trust_list_seq": self.trust_list.sequence,
            "patched": sorted(self.patched),
            "status_lists": {
                uri: {
                    "bits": token.status_list.bits,
                    "size": len(token.status_list),
                    "exp": int(token.exp.timestamp()),
                    "sha256": b64url_encode(list_digest(token.status_list)),
                }
                for uri, token in sorted(self.status_lists.items())
            },
        }


def encode_bundle(
    *,
    issuer: str,
    version: int,
    issued_at: datetime,
    expires_at: datetime,
    base: int | None,
    trust_list: str,
    status_lists: Mapping[str, str],
    signer: Signer,
    status_patches: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """Sign a bundle with ``signer`` (a ``status-list`` key listed in ``trust_list``).

    ``trust_list`` is the root-signed trust list JWS; ``status_lists`` maps each shard URI
    to its Status List Token. ``base`` is ``None`` for a full bundle or the version a
    delta is taken from (lower than ``version``). ``status_patches`` (a delta only) maps
    shard URIs not in ``status_lists`` to entry patches
    (:func:`~cardsvc.core.statuspatch.make_patch`); without it the claim is left out, so
    such a bundle is byte for byte what a verifier without patch support reads. Times
    must be timezone-aware and are truncated to whole seconds. Raises :class:`ValueError`
    for inconsistent arguments.
    """
    for name, value in (("issued_at", issued_at), ("expires_at", expires_at)):
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime")
    if not issuer:
        raise ValueError("issuer must be a non-empty string")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a non-negative int, not {shown(version)}")
    if base is not None and (isinstance(base, bool) or not 0 <= base < version):
        raise ValueError(f"base must be None or in [0, version), not {shown(base)}")
    iat = int(issued_at.timestamp())
    exp = int(expires_at.timestamp())
    if exp <= iat:
        raise ValueError("expires_at must be after issued_at")
    claims: dict[str, object] = {
        "iss": issuer,
        "ver": version,
        "iat": iat,
        "exp": exp,
        "base": base,
        "trust_list": trust_list,
        "status_lists": dict(status_lists),
    }
    if status_patches:
        if base is None:
            raise ValueError("status_patches need a base: a full bundle carries whole shards")
        both = set(status_patches) & set(status_lists)
        if both:
            raise ValueError(f"shards both whole and patched: {sorted(both)}")
        claims["status_patches"] = {uri: dict(patch) for uri, patch in status_patches.items()}
    return sign_jws({"typ": BUNDLE_TYP}, claims, signer)


def _unverified_claims(token: str, max_size: int) -> dict[str, Any]:
    if not isinstance(token, str):
        raise DecodeError(_FORMAT, "bundle must be text")
    if len(token) > max_size:
        raise InputTooLargeError(_FORMAT, len(token), max_size)
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii():
        raise DecodeError(_FORMAT, "not a compact JWS (three base64url parts)")
    return strict_json_object(b64url_decode(parts[1], what="bundle payload"), what=_FORMAT)


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VerificationError("claims", f"{name} must be a non-negative integer")
    return value


def verify_bundle(
    token: str,
    *,
    root: VerifyingKey,
    now: datetime,
    leeway: timedelta,
    previous: Bundle | None = None,
    max_size: int = MAX_BUNDLE_SIZE,
    max_status_list_size: int = MAX_JWT_SIZE,
    max_entries: int = MAX_ENTRIES,
) -> Bundle:
    """Verify a bundle against the pinned ``root`` key and return it (merged, for a delta).

    Failures raise :class:`VerificationError` with ``check``:

    - any check of :meth:`TrustList.verify` on the embedded trust list (``key-unknown``
      when it is not signed by ``root``, ``signature``, ``expired`` ...);
    - ``key-unknown``/``key-purpose``/``key-window``/``signature``/``algorithm``/``typ``:
      the bundle is not signed by a ``status-list`` key of that trust list;
    - ``claims``: a claim is missing or mistyped; ``expired``/``issued-in-future``;
    - ``bundle-issuer``: the trust list's issuer is not the bundle's;
    - ``bundle-rollback``: the version, signed time or trust list sequence is older than
      ``previous``'s, or the version is reused with another signed time;
    - ``bundle-base``: a delta whose base is not ``previous.version`` (fetch a full one);
    - :class:`~cardsvc.core.statuspatch.StatusPatchError` for an entry patch:
      ``patch-base`` (the held bundle has no such shard), ``patch-index`` (out of range),
      ``patch-status`` (does not fit the list's bits), ``patch-digest`` (the rebuilt list
      is not the issuer's);
    - any check of :func:`verify_status_list_token` for a shard (``sub`` when a token is
      filed under another shard URI).

    Malformed input raises :class:`DecodeError`, oversized input
    :class:`InputTooLargeError`.
    """
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    unverified = _unverified_claims(token, max_size)
    trust_list_jws = unverified.get("trust_list")
    if not isinstance(trust_list_jws, str):
        raise VerificationError("claims", "trust_list must be a compact JWS string")
    trust_list = TrustList.verify(trust_list_jws, root=root, now=now, leeway=leeway)

    def status_list_key(header: Mapping[str, Any]) -> VerifyingKey:
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise VerificationError("key-unknown", "bundle header has no kid")
        return trust_list.find(kid, KeyPurpose.STATUS_LIST, now=now).key

    verified = verify_jws(token, typ=BUNDLE_TYP, key_for=status_list_key, max_size=max_size)
    claims = verified.claims
    if claims.get("trust_list") != trust_list_jws:  # pragma: no cover - same bytes, signed
        raise VerificationError("claims", "trust_list changed between parses")
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise VerificationError("claims", "iss must be a non-empty string")
    version = _int_claim(claims, "ver")
    base = claims.get("base")
    if base is not None:
        base = _int_claim(claims, "base")
        if base >= version:
            raise VerificationError("claims", f"base {base} is not below version {version}")
    shards = claims.get("status_lists")
    if not isinstance(shards, dict) or not all(
        isinstance(uri, str) and uri and isinstance(jws, str) for uri, jws in shards.items()
    ):
        raise VerificationError("claims", "status_lists must map shard URIs to JWS strings")
    patches = claims.get("status_patches", {})
    if not isinstance(patches, dict) or not all(isinstance(uri, str) and uri for uri in patches):
        raise VerificationError("claims", "status_patches must map shard URIs to patches")
    if patches and base is None:
        raise VerificationError("claims", "a full bundle cannot carry status_patches")
    if set(patches) & set(shards):
        raise VerificationError("claims", "a shard is both in status_lists and status_patches")
    # Parsed before anything else is decompressed: a malformed patch is a DecodeError.
    parsed = {uri: parse_patch(patch) for uri, patch in patches.items()}
    check_times(claims, now=now, leeway=leeway)
    issued_at = datetime.fromtimestamp(claims["iat"], UTC)
    expires_at = datetime.fromtimestamp(claims["exp"], UTC)
    if trust_list.issuer != issuer:
        raise VerificationError(
            "bundle-issuer", f"trust list issuer {shown(trust_list.issuer)} is not {shown(issuer)}"
        )

    if previous is not None:
        _check_not_rolled_back(previous, issuer, version, issued_at, trust_list)

    fresh = {
        uri: verify_status_list_token(
            jws,
            trust_list=trust_list,
            expected_sub=uri,
            now=now,
            leeway=leeway,
            max_size=max_status_list_size,
            max_entries=max_entries,
        )
        for uri, jws in shards.items()
    }
    if base is None:
        status_lists = fresh
    else:
        if previous is None or previous.version != base:
            have = "no bundle" if previous is None else f"version {previous.version}"
            raise VerificationError(
                "bundle-base",
                f"delta from version {base} cannot apply to {have}; fetch a full bundle",
            )
        status_lists = {**previous.status_lists, **fresh}
        kid = verified.header.get("kid")
        for uri, (runs, digest) in parsed.items():
            held = previous.status_lists.get(uri)
            if held is None:
                raise StatusPatchError(
                    "patch-base",
                    f"the held bundle (version {previous.version}) has no such shard; "
                    "fetch a full bundle",
                    uri=uri,
                )
            # Vouched for by this bundle's signature: its times, its key.
            status_lists[uri] = StatusListToken(
                sub=uri,
                iat=issued_at,
                exp=expires_at,
                ttl=held.ttl,
                status_list=apply_patch(held.status_list, runs, digest, uri=uri),
                kid=kid if isinstance(kid, str) else None,
            )
    return Bundle(
        issuer=issuer,
        version=version,
        issued_at=issued_at,
        expires_at=expires_at,
        base=base,
        trust_list=trust_list,
        status_lists=status_lists,
        patched=frozenset(parsed),
    )


def _check_not_rolled_back(
    previous: Bundle, issuer: str, version: int, issued_at: datetime, trust_list: TrustList
) -> None:
    if issuer != previous.issuer:
        raise VerificationError(
            "bundle-issuer", f"issuer {shown(issuer)} is not {shown(previous.issuer)}"
        )
    if version < previous.version:
        raise VerificationError(
            "bundle-rollback", f"version {version} is older than the held {previous.version}"
        )
    if version == previous.version and issued_at != previous.issued_at:
        raise VerificationError("bundle-rollback", f"version {version} reused with another iat")
    if issued_at < previous.issued_at:
        raise VerificationError(
            "bundle-rollback", f"signed time {issued_at:%Y-%m-%dT%H:%M:%SZ} is before the held one"
        )
    if trust_list.sequence < previous.trust_list.sequence:
        raise VerificationError(
            "bundle-rollback",
            f"trust list sequence {trust_list.sequence} is older than the held "
            f"{previous.trust_list.sequence}",
        )
