"""PKCS#11 key store: keys generated on a token (an HSM; SoftHSM2 in tests), never leaving it.

Every key is an EC P-256 pair made on the token by ``C_GenerateKeyPair``: the private
half ``CKA_TOKEN``, ``CKA_PRIVATE``, ``CKA_SENSITIVE``, not ``CKA_EXTRACTABLE``,
``CKA_SIGN`` and no other use; the public half ``CKA_VERIFY`` only. Signatures are made
by the token with ``CKM_ECDSA`` over a SHA-256 digest computed here (SoftHSM 2.6 has no
``CKM_ECDSA_SHA256``), come back as raw r||s and are put in low-S form as every encoder
does; each is checked against the public key before it is handed out, so a device fault
never yields a signed record that does not verify.

Key metadata (the :class:`~cardsvc.keystore.records.KeyRecord` list with each key's label
on the token, and the trust list sequence) lives **on the token**, in one ``CKO_DATA``
object (application ``cardsvc``, label ``cardsvc-key-index``, ``CKA_PRIVATE`` so reading
it needs the login), not in a file beside. Why:

- the keys and their schedule cannot drift apart: an HSM backup, restore or a cluster
  member's replica carries both, and several issuer hosts on one network HSM see one
  schedule, where a file beside would need its own sharing, backup and permissions;
- nothing else must be kept secret or in step on the issuer host (its disk holds no
  key material and no key metadata);
- it is small (a few hundred bytes a key); retired keys leave it when they leave the
  trust list's horizon, by the ordinary rotation rules.

Tokens cannot rename an object atomically, so a commit writes a new object whose value
carries the next ``generation`` and then destroys the older ones: a crash in between
leaves two, and the highest generation wins (the next commit removes the other). The
metadata is not trusted blindly: at start every listed key is looked up on the token by
its label and its public key, type, curve and attributes are checked (see
:meth:`Pkcs11Backend.check`), and ``kid`` is recomputed from the public key read there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_named_curve_parameters

from cardsvc.core.errors import CoreError, VerificationError
from cardsvc.core.keys import ES256, KeyPurpose, VerifyingKey
from cardsvc.core.signing import Signer, low_s
from cardsvc.errors import (
    HsmKeyError,
    KeyNotFoundError,
    KeyStoreError,
    SigningUnavailableError,
)
from cardsvc.keystore.pkcs11_sessions import (
    LoadedModule,
    PinReader,
    PooledSession,
    SessionPool,
    load_module,
)
from cardsvc.keystore.records import KeyRecord

log = logging.getLogger(__name__)

INDEX_APPLICATION = "cardsvc"
INDEX_LABEL = "cardsvc-key-index"
INDEX_VERSION = 1
#: DER of the named curve P-256 (prime256v1), as CKA_EC_PARAMS holds it.
P256_PARAMS = encode_named_curve_parameters("secp256r1")
#: Uses a signing key must not have (each is refused at start if the token says true).
_FORBIDDEN_USES = (
    Attribute.DECRYPT,
    Attribute.UNWRAP,
    Attribute.DERIVE,
    Attribute.SIGN_RECOVER,
)

#: The private key attributes :meth:`Pkcs11Backend.key_attributes` reports.
_REPORTED = (
    Attribute.TOKEN,
    Attribute.PRIVATE,
    Attribute.SENSITIVE,
    Attribute.ALWAYS_SENSITIVE,
    Attribute.EXTRACTABLE,
    Attribute.NEVER_EXTRACTABLE,
    Attribute.LOCAL,
    Attribute.MODIFIABLE,
    Attribute.SIGN,
    *_FORBIDDEN_USES,
)

_PUBLIC_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
    Attribute.DERIVE: False,
    Attribute.VERIFY_RECOVER: False,
}
_PRIVATE_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
    Attribute.SIGN_RECOVER: False,
}


def _point_from_token(value: bytes) -> bytes:
    """The uncompressed point of ``CKA_EC_POINT``: DER OCTET STRING per the standard,
    though some modules return the bare point."""
    if len(value) == 67 and value[:2] == b"\x04\x41":
        return value[2:]
    return value


def public_key_of(obj: Any) -> VerifyingKey:
    """The P-256 public key of a token public key object; ``ValueError`` if it is not one."""
    if obj[Attribute.KEY_TYPE] != KeyType.EC:
        raise ValueError(f"is a {_key_type(obj[Attribute.KEY_TYPE])} key, not EC")
    if bytes(obj[Attribute.EC_PARAMS]) != P256_PARAMS:
        raise ValueError("is not on the curve P-256")
    point = _point_from_token(bytes(obj[Attribute.EC_POINT]))
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        return VerifyingKey(public_key=public)
    except (ValueError, CoreError):
        raise ValueError("has an invalid EC point") from None


@dataclass(frozen=True, kw_only=True)
class Pkcs11Signer:
    """Signs with one key on the token, through the backend's session pool."""

    kid: str
    label: str
    key: VerifyingKey = field(repr=False)
    pool: SessionPool = field(repr=False, compare=False)
    alg: str = ES256

    def verifying_key(self) -> VerifyingKey:
        return self.key

    def sign(self, data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()

        def on_token(pooled: PooledSession) -> bytes:
            private = pooled.objects.get(self.label)
            if private is None:
                private = pooled.session.get_key(
                    object_class=ObjectClass.PRIVATE_KEY, label=self.label
                )
                pooled.objects[self.label] = private
            return bytes(cast(pkcs11.SignMixin, private).sign(digest, mechanism=Mechanism.ECDSA))

        signature = self.pool.run(on_token)
        if len(signature) != 64:
            raise SigningUnavailableError(
                f"the token returned a {len(signature)}-byte signature, not 64", retry_after=1
            )
        signature = low_s(signature)
        try:
            self.key.verify_raw(signature, data)
        except VerificationError:
            raise SigningUnavailableError(
                f"the token's signature with key {self.label!r} does not verify", retry_after=1
            ) from None
        return signature


@dataclass(frozen=True)
class _Index:
    generation: int
    trust_list_sequence: int
    records: tuple[KeyRecord, ...]
    labels: dict[str, str]  # kid -> label


_EMPTY = _Index(generation=0, trust_list_sequence=-1, records=(), labels={})


def _has_label(session: pkcs11.Session, label: str) -> bool:
    return any(True for _ in session.get_objects({Attribute.LABEL: label}))


class Pkcs11Backend:
    """A :class:`~cardsvc.keystore.backend.KeyBackend` on one PKCS#11 token.

    ``open`` logs in and checks the token (:meth:`check`); every failure to do so is a
    typed :class:`~cardsvc.errors.HsmError` naming the problem, and nothing falls back to
    files. Afterwards signing failures are :class:`~cardsvc.errors.SigningUnavailableError`
    while the pool recovers.
    """

    def __init__(
        self,
        *,
        module: Path,
        token_label: str,
        pin: PinReader,
        sessions: int = 4,
        session_wait: float = 5.0,
        reopen_interval: float = 1.0,
        retry_after: int = 5,
        index_refresh: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.module_path = module
        self.token_label = token_label
        self._module: LoadedModule = load_module(module, token_label=token_label)
        self.pool = SessionPool(
            self._module,
            token_label=token_label,
            pin=pin,
            size=sessions,
            wait=session_wait,
            reopen_interval=reopen_interval,
            retry_after=retry_after,
            clock=clock,
        )
        self._index_refresh = index_refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._index: _Index | None = None
        self._index_read_at = 0.0
        self._signers: dict[str, Pkcs11Signer] = {}
        #: kid -> label of keys generated here and not yet committed.
        self._generated: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Pkcs11Backend({str(self.module_path)!r}, token={self.token_label!r})"

    @classmethod
    def open(cls, **kwargs: Any) -> Pkcs11Backend:
        """Load the module, log in to the token and check every key it lists."""
        backend = cls(**kwargs)
        backend.pool.open()
        try:
            backend.check()
        except BaseException:
            backend.close()
            raise
        return backend

    def close(self) -> None:
        self.pool.close()

    def _key_error(self, label: str, kid: str | None, reason: str) -> HsmKeyError:
        return HsmKeyError(
            module=str(self.module_path),
            token=self.token_label,
            label=label,
            kid=kid,
            reason=reason,
        )

    # -- checks -------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse a token the issuer must not sign with (typed :class:`HsmError`):

        - no private key on the token may be extractable or not sensitive;
        - every key the metadata lists must be there under its label, once, as an EC
          P-256 pair whose private half signs and does nothing else, and whose public
          half has the listed ``kid``;
        - the token must offer ``CKM_ECDSA``.
        """
        index = self._read_index_strict()
        self.pool.run_admin(lambda session: self._check_on(session, index))

    def _check_on(self, session: pkcs11.Session, index: _Index) -> None:
        mechanisms = session.token.slot.get_mechanisms()
        if Mechanism.ECDSA not in mechanisms or Mechanism.EC_KEY_PAIR_GEN not in mechanisms:
            raise self._key_error("-", None, "the token offers no CKM_ECDSA / EC key generation")
        for private in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}):
            label = str(private[Attribute.LABEL])
            if _true(private, Attribute.EXTRACTABLE) or not _true(private, Attribute.SENSITIVE):
                raise self._key_error(
                    label, None, "the private key is extractable or not sensitive"
                )
        for record in index.records:
            self._check_key(session, index.labels[record.kid], record)

    def _check_key(self, session: pkcs11.Session, label: str, record: KeyRecord) -> None:
        kid = record.kid
        privates = list(
            session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
        )
        publics = list(
            session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: label})
        )
        if not privates:
            raise self._key_error(label, kid, "no private key with this label on the token")
        if not publics:
            raise self._key_error(label, kid, "no public key with this label on the token")
        if len(privates) > 1 or len(publics) > 1:
            raise self._key_error(label, kid, "more than one key pair has this label")
        private, public = privates[0], publics[0]
        if private[Attribute.KEY_TYPE] != KeyType.EC:
            kind = _key_type(private[Attribute.KEY_TYPE])
            raise self._key_error(label, kid, f"is a {kind} key, not EC P-256")
        if bytes(private[Attribute.EC_PARAMS]) != P256_PARAMS:
            raise self._key_error(label, kid, "is not on the curve P-256")
        if not _true(private, Attribute.SIGN):
            raise self._key_error(label, kid, "the private key may not sign (CKA_SIGN false)")
        for use in _FORBIDDEN_USES:
            if _true(private, use):
                raise self._key_error(
                    label, kid, f"the private key allows {use.name} as well as signing"
                )
        try:
            key = public_key_of(public)
        except ValueError as exc:
            raise self._key_error(label, kid, f"the public key {exc}") from None
        if key.kid != kid:
            raise self._key_error(
                label, kid, f"the public key on the token has kid {key.kid}, not the listed one"
            )

    # -- metadata -----------------------------------------------------------------------

    def _index_objects(self, session: pkcs11.Session) -> list[tuple[int, Any, dict[str, Any]]]:
        found = []
        template = {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.APPLICATION: INDEX_APPLICATION,
            Attribute.LABEL: INDEX_LABEL,
        }
        for obj in session.get_objects(template):
            try:
                doc = json.loads(bytes(obj[Attribute.VALUE]))
                if not isinstance(doc, dict) or doc.get("version") != INDEX_VERSION:
                    raise ValueError(f"not a version {INDEX_VERSION} key index")
                generation = doc["generation"]
                if isinstance(generation, bool) or not isinstance(generation, int):
                    raise ValueError("generation must be an integer")
            except (ValueError, KeyError, TypeError) as exc:
                raise self._key_error(INDEX_LABEL, None, f"unreadable key index: {exc}") from None
            found.append((generation, obj, doc))
        found.sort(key=lambda item: item[0])
        return found

    def _parse_index(self, generation: int, doc: dict[str, Any]) -> _Index:
        try:
            seq = doc["trust_list_sequence"]
            if isinstance(seq, bool) or not isinstance(seq, int):
                raise ValueError("trust_list_sequence must be an integer")
            records, labels = [], {}
            for entry in doc["keys"]:
                label = entry["label"]
                if not isinstance(label, str) or not label:
                    raise ValueError("each key needs its label on the token")
                record = KeyRecord.from_json(entry)
                records.append(record)
                labels[record.kid] = label
        except (ValueError, KeyError, TypeError, CoreError) as exc:
            raise self._key_error(INDEX_LABEL, None, f"unreadable key index: {exc}") from None
        return _Index(
            generation=generation, trust_list_sequence=seq, records=tuple(records), labels=labels
        )

    def _found_index(self, session: pkcs11.Session) -> list[tuple[int, Any, dict[str, Any]]]:
        """The index objects on the token; none where this process has seen one means the
        token is not (wholly) there: SoftHSM, for one, shows a token taken away as empty.
        That is a device failure, never an empty key store (which ``keys init`` would
        fill with new keys)."""
        found = self._index_objects(session)
        if not found:
            with self._lock:
                known = self._index
            if known is not None and known.generation:
                raise p11.TokenNotPresent()
        return found

    def _read_index_on(self, session: pkcs11.Session) -> _Index:
        found = self._found_index(session)
        if not found:
            return _EMPTY
        generation, _, doc = found[-1]
        return self._parse_index(generation, doc)

    def _read_index_strict(self) -> _Index:
        index = self.pool.run_admin(self._read_index_on)
        with self._lock:
            self._index, self._index_read_at = index, self._clock()
        return index

    def _current(self) -> _Index:
        """The metadata, read again from the token at most once per ``index_refresh``.

        While the token does not answer, the last copy serves (verification needs only
        public keys; signing fails on its own with ``signing-unavailable``).
        """
        with self._lock:
            index, read_at = self._index, self._index_read_at
        if index is not None and self._clock() - read_at < self._index_refresh:
            return index
        try:
            return self._read_index_strict()
        except SigningUnavailableError:
            if index is None:
                raise
            log.warning("key index not re-read from the token (it does not answer)")
            with self._lock:
                self._index_read_at = self._clock()
            return index

    def exists(self) -> bool:
        return bool(self._current().generation)

    def records(self) -> list[KeyRecord]:
        return list(self._current().records)

    def trust_list_sequence(self) -> int:
        return self._current().trust_list_sequence

    def labels(self) -> dict[str, str]:
        """``kid`` -> label on the token of every listed key."""
        return dict(self._current().labels)

    def label_in_use(self, label: str) -> bool:
        """Whether any object on the token carries ``label`` (a ceremony checks every label
        it will use before it makes any key)."""

        def on_token(session: pkcs11.Session) -> bool:
            return _has_label(session, label)

        return self.pool.run_admin(on_token)

    # -- keys ---------------------------------------------------------------------------

    def generate(
        self, purpose: KeyPurpose, *, alg: str = ES256, label: str | None = None
    ) -> VerifyingKey:
        """Generate a key pair on the token under ``label`` (default: purpose + random).

        Refuses a label some object on the token already has: a key is never overwritten
        or reused. The pair is not part of the store until :meth:`commit` lists it.
        Only ES256: PKCS#11 defines no SM2 mechanism (SoftHSM2 has none; HSMs that sign
        SM2 do it through vendor mechanisms), so SM2 keys stay in the file store.
        """
        if alg != ES256:
            raise KeyStoreError(
                f"the PKCS#11 key store makes ES256 keys only, not {alg}: PKCS#11 has no "
                "standard SM2 mechanism (SoftHSM2 has none); keep SM2 keys in the file store"
            )
        chosen = label or f"cardsvc-{purpose.value}-{secrets.token_hex(6)}"
        if not chosen.isprintable() or len(chosen) > 64:
            raise KeyStoreError(f"key label {chosen!r}: up to 64 printable characters")

        def on_token(session: pkcs11.Session) -> VerifyingKey:
            if _has_label(session, chosen):
                raise KeyStoreError(f"the token already has an object labelled {chosen!r}")
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: P256_PARAMS}, local=True
            )
            public, _private = params.generate_keypair(
                store=True,
                label=chosen,
                id=secrets.token_bytes(16),
                public_template=_PUBLIC_TEMPLATE,
                private_template=_PRIVATE_TEMPLATE,
            )
            return public_key_of(public)

        key = self.pool.run_admin(on_token)
        with self._lock:
            self._generated[key.kid] = chosen
        log.info("generated %s key %s on token %r as %r", purpose.value, key.kid,
                 self.token_label, chosen)  # fmt: skip
        return key

    def _label_of(self, kid: str, index: _Index) -> str:
        with self._lock:
            label = self._generated.get(kid) or index.labels.get(kid)
        if label is None:
            raise KeyNotFoundError(kid)
        return label

    def commit(self, records: Sequence[KeyRecord], *, trust_list_sequence: int) -> None:
        def on_token(session: pkcs11.Session) -> _Index:
            found = self._found_index(session)
            current = self._parse_index(found[-1][0], found[-1][2]) if found else _EMPTY
            entries = [
                {**record.to_json(), "label": self._label_of(record.kid, current)}
                for record in records
            ]
            generation = current.generation + 1
            doc = {
                "version": INDEX_VERSION,
                "generation": generation,
                "trust_list_sequence": trust_list_sequence,
                "keys": entries,
            }
            session.create_object(
                {
                    Attribute.CLASS: ObjectClass.DATA,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.APPLICATION: INDEX_APPLICATION,
                    Attribute.LABEL: INDEX_LABEL,
                    Attribute.VALUE: json.dumps(doc, separators=(",", ":")).encode(),
                }
            )
            # The new generation is stored: the older ones may go (a crash before this
            # leaves them, and the highest generation is read).
            for _, old, _ in found:
                old.destroy()
            return self._parse_index(generation, doc)

        index = self.pool.run_admin(on_token)
        with self._lock:
            self._index, self._index_read_at = index, self._clock()

    def key_attributes(self, kid: str) -> dict[str, object]:
        """What the token says of one listed key's private half (for a ceremony's
        transcript): label, ``CKA_ID``, key type, curve, and its boolean attributes."""
        label = self._label_of(kid, self._current())

        def on_token(session: pkcs11.Session) -> dict[str, object]:
            private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
            out: dict[str, object] = {
                "label": label,
                "id": bytes(private[Attribute.ID]).hex(),
                "key_type": _key_type(private[Attribute.KEY_TYPE]),
                "curve": "P-256" if bytes(private[Attribute.EC_PARAMS]) == P256_PARAMS else "?",
            }
            for attribute in _REPORTED:
                out[attribute.name] = _true(private, attribute)
            return out

        return self.pool.run_admin(on_token)

    def signer(self, kid: str) -> Signer:
        with self._lock:
            cached = self._signers.get(kid)
        if cached is not None:
            return cached
        index = self._current()
        record = next((r for r in index.records if r.kid == kid), None)
        if record is None:
            raise KeyNotFoundError(kid)
        signer = Pkcs11Signer(kid=kid, label=index.labels[kid], key=record.key, pool=self.pool)
        with self._lock:
            self._signers[kid] = signer
        return signer


def _key_type(value: Any) -> str:
    """``CKA_KEY_TYPE`` by name; a vendor-defined type by its number."""
    try:
        return KeyType(value).name
    except ValueError:
        return f"vendor key type {int(value):#x}"


def _true(obj: Any, attribute: Attribute) -> bool:
    """An attribute's value, false where the token does not have it for this object."""
    try:
        return bool(obj[attribute])
    except (p11.AttributeTypeInvalid, p11.AttributeSensitive):
        return False
