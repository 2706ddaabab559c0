"""The key ceremony: root and issuing keys from one reviewed file, and the offline root.

:func:`check` validates a ceremony file and its surroundings without opening a token;
:func:`run` makes the root on its own store, the issuing keys on the issuer's store,
signs the first trust list (sequence 0) with the root and writes the public outputs and
a transcript; :func:`sign_trust_list` is the offline root's later job, signing a trust
list the online issuer prepared. Nothing here overwrites a file or reuses a key store.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from cardsvc.core.errors import CoreError
from cardsvc.core.files import write_atomically
from cardsvc.core.keys import KeyPurpose, VerifyingKey
from cardsvc.core.trustlist import MAX_TRUST_LIST_SIZE, TrustList
from cardsvc.errors import CeremonyRefusedError, ConfigurationError, TrustListRefusedError
from cardsvc.keystore.backend import KeyBackend
from cardsvc.keystore.ceremony_config import (
    CeremonyConfig,
    FileStoreSpec,
    KeySpec,
    Pkcs11StoreSpec,
    StoreSpec,
)
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.keystore.offline import read_trust_list_unchecked_times
from cardsvc.keystore.open import Pkcs11Config, open_backend
from cardsvc.keystore.records import KeyRecord
from cardsvc.keystore.service import KeyPolicy, KeyService

PUBLIC_MODE = 0o644


@runtime_checkable
class DescribesKeys(Protocol):
    """A backend that can say how it holds a key (PKCS#11 attributes, for the transcript)."""

    def key_attributes(self, kid: str) -> Mapping[str, object]: ...


def _secret(path: Path | None, env: str | None, what: str) -> bytes:
    if path is not None:
        try:
            lines = path.read_bytes().splitlines()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the {what} file {path}: {exc.strerror}"
            ) from None
        if not lines or not lines[0]:
            raise ConfigurationError(f"the {what} file {path} is empty")
        return lines[0]
    assert env is not None  # noqa: S101 - the parser requires one of the two
    value = os.environ.get(env, "")
    if not value:
        raise ConfigurationError(f"the {what} is read from ${env}, which is not set")
    return value.encode()


def open_store(spec: StoreSpec) -> KeyBackend:
    """The backend a store section names (reads its passphrase; logs in to a token)."""
    if isinstance(spec, FileStoreSpec):
        passphrase = _secret(spec.passphrase_file, spec.passphrase_env, "passphrase")
        return FileKeyBackend(spec.directory, passphrase)
    pin = None if spec.pin_env is None else _secret(None, spec.pin_env, "PIN").decode()
    return open_backend(
        Pkcs11Config(module=spec.module, token_label=spec.token_label, pin_file=spec.pin_file,
                     pin=pin, sessions=1)
    )  # fmt: skip


def _close(backend: KeyBackend) -> None:
    close = getattr(backend, "close", None)
    if callable(close):
        close()


def _label_in_use(backend: KeyBackend, label: str) -> bool:
    if isinstance(backend, FileKeyBackend):
        return False  # files are named by kid: a new key cannot land on an old one
    from cardsvc.keystore.pkcs11 import Pkcs11Backend

    return isinstance(backend, Pkcs11Backend) and backend.label_in_use(label)


def _generate(backend: KeyBackend, spec: KeySpec) -> VerifyingKey:
    if isinstance(backend, FileKeyBackend):
        return backend.generate(spec.purpose)
    from cardsvc.keystore.pkcs11 import Pkcs11Backend

    if isinstance(backend, Pkcs11Backend):
        return backend.generate(spec.purpose, label=spec.label)
    return backend.generate(spec.purpose)


def _store_in_use(spec: StoreSpec) -> bool:
    """Whether a store already holds keys, found without opening a token."""
    if isinstance(spec, FileStoreSpec):
        return FileKeyBackend(spec.directory, None).exists()
    return False


def _secret_problem(spec: StoreSpec) -> str | None:
    path = spec.passphrase_file if isinstance(spec, FileStoreSpec) else spec.pin_file
    if path is not None and not path.is_file():
        return f"{spec.describe()}: secret file {path} does not exist"
    return None


@dataclass(frozen=True, kw_only=True)
class CheckReport:
    config: CeremonyConfig
    #: What a reviewer should see: one line per key and output.
    lines: tuple[str, ...]


def check(config: CeremonyConfig) -> CheckReport:
    """Everything that can be checked without touching a token; raises on the first fault."""
    for path in config.outputs.all():
        if path.exists():
            raise CeremonyRefusedError(str(path), "the output exists already")
    for spec in (config.root_store, config.issuing_store):
        if _store_in_use(spec):
            raise CeremonyRefusedError(spec.describe(), "it holds keys already")
        problem = _secret_problem(spec)
        if problem is not None:
            raise ConfigurationError(problem)
        if isinstance(spec, Pkcs11StoreSpec) and not spec.module.is_file():
            raise ConfigurationError(f"{spec.describe()}: no PKCS#11 module at {spec.module}")
    lines = [
        f"ceremony {config.name!r} for {config.issuer}, config sha256 {config.sha256}",
        f"root {config.root.label!r} ({config.root.key_type}) on {config.root_store.describe()}",
        *(
            f"{k.purpose.value:22} {k.label!r} ({k.key_type}) on {config.issuing_store.describe()}"
            for k in config.keys
        ),
        *(f"writes {p}" for p in config.outputs.all()),
    ]
    return CheckReport(config=config, lines=tuple(lines))


def _attributes(backend: KeyBackend, kid: str) -> dict[str, object]:
    """How the store holds a key: on a token, what the token says of it (read back)."""
    if isinstance(backend, FileKeyBackend):
        return {
            "backend": "file",
            "key_type": "EC",
            "curve": "P-256",
            "private_key": "PKCS#8, encrypted with the store passphrase",
            "file": str(backend.private_dir / f"{kid}.pem"),
        }
    from cardsvc.keystore.pkcs11 import Pkcs11Backend

    if isinstance(backend, Pkcs11Backend):
        return {
            "backend": "pkcs11",
            "token_label": backend.token_label,
            **backend.key_attributes(kid),
        }
    if isinstance(backend, DescribesKeys):
        return {"backend": type(backend).__name__, **backend.key_attributes(kid)}
    return {"backend": type(backend).__name__}


def _key_entry(
    backend: KeyBackend, record: KeyRecord, spec: KeySpec, store: StoreSpec
) -> dict[str, object]:
    return {
        "kid": record.kid,
        "purpose": record.purpose.value,
        "label": spec.label,
        "key_type": spec.key_type,
        "alg": "ES256",
        "store": store.describe(),
        "jwk": record.key.jwk(),
        "created_at": record.created_at.isoformat(),
        "attributes": _attributes(backend, record.kid),
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, indent=2, ensure_ascii=False).encode() + b"\n"


@dataclass(frozen=True, kw_only=True)
class CeremonyResult:
    root: VerifyingKey
    keys: tuple[KeyRecord, ...]
    trust_list: TrustList
    transcript: dict[str, object]


def run(config: CeremonyConfig, *, now: datetime) -> CeremonyResult:
    """Make the keys, sign the first trust list, write the outputs and the transcript."""
    check(config)
    root_backend = open_store(config.root_store)
    try:
        issuing_backend = open_store(config.issuing_store)
    except BaseException:
        _close(root_backend)
        raise
    try:
        return _run(config, root_backend, issuing_backend, now=now)
    finally:
        _close(issuing_backend)
        _close(root_backend)


def _run(
    config: CeremonyConfig, root_backend: KeyBackend, issuing_backend: KeyBackend, *, now: datetime
) -> CeremonyResult:
    # Everything that can refuse does so before the first key is made.
    for store, backend, specs in (
        (config.root_store, root_backend, (config.root,)),
        (config.issuing_store, issuing_backend, config.keys),
    ):
        if backend.exists():
            raise CeremonyRefusedError(store.describe(), "it holds keys already")
        for spec in specs:
            if _label_in_use(backend, spec.label):
                raise CeremonyRefusedError(
                    store.describe(), f"an object labelled {spec.label!r} is on it already"
                )

    # The root, on its own store.
    root_key = _generate(root_backend, config.root)
    root_record = KeyRecord(
        kid=root_key.kid, purpose=KeyPurpose.ROOT, key=root_key, created_at=now, activates_at=now
    )
    root_backend.commit([root_record], trust_list_sequence=-1)

    # The issuing keys, on the issuer's store. First keys sign as soon as their trust
    # list is installed: no verifier has cached anything yet.
    records = []
    for spec in config.keys:
        key = _generate(issuing_backend, spec)
        records.append(
            KeyRecord(kid=key.kid, purpose=spec.purpose, key=key, created_at=now, activates_at=now)
        )
    issuing_backend.commit(records, trust_list_sequence=-1)

    policy = KeyPolicy(trust_list_lifetime=timedelta(hours=config.trust_list_lifetime_hours))
    keys = KeyService(issuing_backend, policy, issuer=config.issuer)
    trust_list = keys.unsigned_trust_list(now=now, sequence=0)
    token = trust_list.sign(root_backend.signer(root_key.kid))
    read_trust_list_unchecked_times(token, root_key)  # the root signed what we meant
    root_backend.commit([root_record], trust_list_sequence=0)

    jwks = {"keys": [{**k.to_json(), "use": "sig"} for k in trust_list.keys]}
    outputs = {
        "root-jwk": (config.outputs.root_jwk, _json_bytes(root_key.jwk())),
        "trust-list": (config.outputs.trust_list, token.encode("ascii") + b"\n"),
        "jwks": (config.outputs.jwks, _json_bytes(jwks)),
    }
    for path, data in outputs.values():
        if path.exists():
            raise CeremonyRefusedError(str(path), "the output appeared during the ceremony")
        write_atomically(path, data, mode=PUBLIC_MODE)
    transcript: dict[str, object] = {
        "ceremony": config.name,
        "issuer": config.issuer,
        "config": {"path": str(config.source.resolve()), "sha256": config.sha256},
        "at": now.isoformat(),
        "root": _key_entry(root_backend, root_record, config.root, config.root_store),
        "keys": [
            _key_entry(issuing_backend, record, spec, config.issuing_store)
            for record, spec in zip(records, config.keys, strict=True)
        ],
        "trust_list": {
            "sequence": trust_list.sequence,
            "issued_at": trust_list.issued_at.isoformat(),
            "expires_at": trust_list.expires_at.isoformat(),
            "sha256": _sha256(token.encode("ascii")),
        },
        "outputs": {
            name: {"path": str(path), "sha256": _sha256(data)}
            for name, (path, data) in outputs.items()
        },
    }
    write_atomically(config.outputs.transcript, _json_bytes(transcript), mode=PUBLIC_MODE)
    return CeremonyResult(
        root=root_key, keys=tuple(records), trust_list=trust_list, transcript=transcript
    )


def read_unsigned(data: bytes) -> TrustList:
    """An unsigned trust list as `cardsvc keys prepare-trust-list` writes it."""
    if len(data) > MAX_TRUST_LIST_SIZE:
        raise TrustListRefusedError("decode", f"larger than {MAX_TRUST_LIST_SIZE} bytes")
    try:
        claims = json.loads(data)
        if not isinstance(claims, dict):
            raise ValueError("not a JSON object")
        return TrustList.from_claims(claims)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TrustListRefusedError("decode", f"not an unsigned trust list: {exc}") from None
    except CoreError as exc:
        raise TrustListRefusedError("decode", str(exc)) from None


def unsigned_bytes(trust_list: TrustList) -> bytes:
    return _json_bytes(trust_list.to_claims())


def sign_trust_list(
    config: CeremonyConfig, unsigned: bytes, out: Path, *, now: datetime
) -> tuple[TrustList, str]:
    """The offline root signs a trust list the online issuer prepared.

    Refused: another issuer's list, a sequence number the root has already signed (or
    lower), an expired list, an existing output file, a root store that does not hold
    exactly the root pinned by the ceremony's root JWK.
    """
    trust_list = read_unsigned(unsigned)
    if trust_list.issuer != config.issuer:
        raise TrustListRefusedError(
            "issuer", f"it is for {trust_list.issuer!r}, the ceremony's issuer is {config.issuer!r}"
        )
    if trust_list.expires_at <= now:
        raise TrustListRefusedError("expired", f"it expired at {trust_list.expires_at}")
    if out.exists():
        raise CeremonyRefusedError(str(out), "the output exists already")
    backend = open_store(config.root_store)
    try:
        return _sign(config, backend, trust_list, out)
    finally:
        _close(backend)


def _sign(
    config: CeremonyConfig, backend: KeyBackend, trust_list: TrustList, out: Path
) -> tuple[TrustList, str]:
    if not backend.exists():
        raise CeremonyRefusedError(
            config.root_store.describe(), "it holds no root: the ceremony has not run on it"
        )
    roots = [r for r in backend.records() if r.purpose is KeyPurpose.ROOT]
    if len(roots) != 1 or len(backend.records()) != 1:
        raise CeremonyRefusedError(
            config.root_store.describe(), "it must hold exactly the root key and nothing else"
        )
    root = roots[0]
    pinned_path = config.outputs.root_jwk
    if pinned_path.exists():
        try:
            pinned = VerifyingKey.from_jwk(json.loads(pinned_path.read_bytes()))
        except (ValueError, CoreError) as exc:
            raise ConfigurationError(f"{pinned_path}: not a root JWK: {exc}") from None
        if pinned.kid != root.kid:
            raise CeremonyRefusedError(
                config.root_store.describe(), f"its root {root.kid} is not the pinned {pinned.kid}"
            )
    last = backend.trust_list_sequence()
    if trust_list.sequence <= last:
        raise TrustListRefusedError(
            "sequence", f"the root has already signed sequence {last}; this one is "
            f"{trust_list.sequence}",
        )  # fmt: skip
    token = trust_list.sign(backend.signer(root.kid))
    read_trust_list_unchecked_times(token, root.key)
    write_atomically(out, token.encode("ascii") + b"\n", mode=PUBLIC_MODE)
    backend.commit([root], trust_list_sequence=trust_list.sequence)
    return trust_list, token
