"""The key ceremony's one input: a reviewed TOML file, parsed into frozen typed config.

Everything is checked before any key is made: an unknown field anywhere, a missing or
repeated purpose, a repeated label, the root sharing the issuer's store, a secret written
into the file, two outputs on one path. Secrets (passphrase, PIN) are named, never
written: a file to read or an environment variable. Relative paths are relative to the
ceremony file. Shape (after Let's Encrypt's ``ceremony`` tool: one file says everything)::

    ceremony = "2026 issuer keys"             # a name, kept in the transcript
    issuer = "https://ssc.example.gov.cn"     # iss of the trust list
    trust-list-lifetime-hours = 720           # optional, default 168

    [root]
    label = "cardsvc root 2026"
    key-type = "ecdsa-p256"
    [root.store]                              # the root's own token or directory
    backend = "pkcs11"                        # or "file"
    module = "/usr/lib/softhsm/libsofthsm2.so"
    token-label = "cardsvc-root"
    pin-file = "/media/ceremony/root.pin"     # or pin-env = "ROOT_PIN"

    [issuing.store]                           # the online issuer's token or directory
    backend = "file"
    directory = "issuer-keys"
    passphrase-file = "issuer.pass"           # or passphrase-env = "..."

    [[issuing.keys]]                          # one per issuing purpose, each exactly once
    purpose = "card-document"
    label = "card document 2026"
    key-type = "ecdsa-p256"

    [outputs]                                 # none may exist yet
    root-jwk = "out/root.jwk"
    trust-list = "out/trust-list.jws"
    jwks = "out/jwks.json"
    transcript = "out/transcript.json"
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardsvc.core.keys import ISSUING_PURPOSES, KeyPurpose
from cardsvc.errors import CeremonyConfigError

#: The one key type the trust model allows today (ES256).
KEY_TYPES = ("ecdsa-p256",)
#: A ceremony file is a page or two; anything this large is not one.
MAX_CONFIG_SIZE = 64 * 1024
_LABEL_RE = re.compile(r"[\w .:()/-]{1,64}")
_ENV_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_SECRET_FIELDS = ("pin", "passphrase", "so-pin", "password")


@dataclass(frozen=True, kw_only=True)
class FileStoreSpec:
    """A file key store: a directory, its passphrase read from a file or the environment."""

    directory: Path
    passphrase_file: Path | None = None
    passphrase_env: str | None = None

    def describe(self) -> str:
        return f"file store {self.directory}"


@dataclass(frozen=True, kw_only=True)
class Pkcs11StoreSpec:
    """A PKCS#11 token: module, token label, PIN read from a file or the environment."""

    module: Path
    token_label: str
    pin_file: Path | None = None
    pin_env: str | None = None

    def describe(self) -> str:
        return f"PKCS#11 token {self.token_label!r} ({self.module})"


StoreSpec = FileStoreSpec | Pkcs11StoreSpec


@dataclass(frozen=True, kw_only=True)
class KeySpec:
    purpose: KeyPurpose
    label: str
    key_type: str = "ecdsa-p256"


@dataclass(frozen=True, kw_only=True)
class Outputs:
    root_jwk: Path
    trust_list: Path
    jwks: Path
    transcript: Path

    def all(self) -> tuple[Path, ...]:
        return (self.root_jwk, self.trust_list, self.jwks, self.transcript)


@dataclass(frozen=True, kw_only=True)
class CeremonyConfig:
    source: Path
    #: SHA-256 of the file's bytes as reviewed (hex), kept in the transcript.
    sha256: str
    name: str
    issuer: str
    trust_list_lifetime_hours: int
    root: KeySpec
    root_store: StoreSpec
    issuing_store: StoreSpec
    keys: tuple[KeySpec, ...]
    outputs: Outputs


class _Reader:
    """Reads one TOML table, remembering which fields were used."""

    def __init__(self, source: Path, where: str, table: object) -> None:
        self.source = source
        self.where = where
        if not isinstance(table, Mapping):
            raise CeremonyConfigError(source, where or "the file", "must be a table")
        self.table: Mapping[str, Any] = table
        self.used: set[str] = set()
        for name in table:
            if name in _SECRET_FIELDS:
                raise self.fail(
                    name,
                    "a secret is never written in the ceremony file: name a file "
                    f"({name}-file) or an environment variable ({name}-env)",
                )

    def _path(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, reason: str) -> CeremonyConfigError:
        return CeremonyConfigError(self.source, self._path(name), reason)

    def get(self, name: str) -> Any:
        self.used.add(name)
        return self.table.get(name)

    def string(self, name: str, *, required: bool = True) -> str | None:
        value = self.get(name)
        if value is None:
            if required:
                raise self.fail(name, "is missing")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, "must be a non-empty string")
        if "\x00" in value:
            raise self.fail(name, "must not hold a NUL character")
        return value

    def required(self, name: str) -> str:
        value = self.string(name)
        assert value is not None  # noqa: S101 - string(required=True) returns a string
        return value

    def path(self, name: str, *, required: bool = True) -> Path | None:
        value = self.string(name, required=required)
        if value is None:
            return None
        path = Path(value)
        return path if path.is_absolute() else (self.source.parent / path)

    def sub(self, name: str, *, index: int | None = None) -> _Reader:
        value = self.get(name) if index is None else self.table[name][index]
        where = self._path(name) if index is None else f"{self._path(name)}[{index}]"
        if value is None:
            raise self.fail(name, "is missing")
        return _Reader(self.source, where, value)

    def done(self) -> None:
        for name in self.table:
            if name not in self.used:
                raise self.fail(name, "unknown field")


def _one_secret(reader: _Reader, kind: str) -> tuple[Path | None, str | None]:
    path = reader.path(f"{kind}-file", required=False)
    env = reader.string(f"{kind}-env", required=False)
    if (path is None) == (env is None):
        raise reader.fail(f"{kind}-file", f"give exactly one of {kind}-file and {kind}-env")
    if env is not None and not _ENV_RE.fullmatch(env):
        raise reader.fail(f"{kind}-env", "must be an environment variable name (A-Z, 0-9, _)")
    return path, env


def _store(reader: _Reader) -> StoreSpec:
    backend = reader.required("backend")
    spec: StoreSpec
    if backend == "file":
        directory = reader.path("directory")
        assert directory is not None  # noqa: S101
        passphrase_file, passphrase_env = _one_secret(reader, "passphrase")
        spec = FileStoreSpec(
            directory=directory, passphrase_file=passphrase_file, passphrase_env=passphrase_env
        )
    elif backend == "pkcs11":
        module = reader.path("module")
        assert module is not None  # noqa: S101
        pin_file, pin_env = _one_secret(reader, "pin")
        spec = Pkcs11StoreSpec(
            module=module, token_label=reader.required("token-label"), pin_file=pin_file,
            pin_env=pin_env,
        )  # fmt: skip
    else:
        raise reader.fail("backend", f"{backend!r} is neither 'file' nor 'pkcs11'")
    reader.done()
    return spec


def _key(reader: _Reader, *, root: bool) -> KeySpec:
    label = reader.required("label")
    if not _LABEL_RE.fullmatch(label):
        raise reader.fail("label", "1 to 64 letters, digits, spaces or . : ( ) / - _")
    key_type = reader.string("key-type", required=False) or KEY_TYPES[0]
    if key_type not in KEY_TYPES:
        raise reader.fail("key-type", f"{key_type!r} is not one of {', '.join(KEY_TYPES)}")
    if root:
        purpose = KeyPurpose.ROOT
    else:
        name = reader.get("purpose")
        if name is None:
            raise reader.fail("purpose", "is missing")
        try:
            purpose = KeyPurpose(name)
        except ValueError:
            raise reader.fail("purpose", f"{name!r} is not a key purpose") from None
        if purpose is KeyPurpose.ROOT:
            raise reader.fail("purpose", "the root is [root], not an issuing key")
    reader.done()
    return KeySpec(purpose=purpose, label=label, key_type=key_type)


def _same_store(a: StoreSpec, b: StoreSpec) -> bool:
    if isinstance(a, FileStoreSpec) and isinstance(b, FileStoreSpec):
        return a.directory.resolve() == b.directory.resolve()
    if isinstance(a, Pkcs11StoreSpec) and isinstance(b, Pkcs11StoreSpec):
        return a.token_label == b.token_label
    return False


def parse_config(source: Path, data: bytes) -> CeremonyConfig:
    """Parse and check a ceremony file's bytes; raises :class:`CeremonyConfigError`."""
    if len(data) > MAX_CONFIG_SIZE:
        raise CeremonyConfigError(source, "the file", f"larger than {MAX_CONFIG_SIZE} bytes")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise CeremonyConfigError(source, "the file", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise CeremonyConfigError(source, "the file", f"is not TOML: {exc}") from None
    top = _Reader(source, "", doc)
    name = top.required("ceremony")
    issuer = top.required("issuer")
    if not issuer.startswith(("https://", "http://")):
        raise top.fail("issuer", "must be the issuer's URL (https://...)")
    lifetime = top.get("trust-list-lifetime-hours")
    if lifetime is None:
        lifetime = 168
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not 1 <= lifetime <= 24 * 400:
        raise top.fail("trust-list-lifetime-hours", "must be a whole number of hours, 1 to 9600")

    root_reader = top.sub("root")
    root_store = _store(root_reader.sub("store"))
    root = _key(root_reader, root=True)

    issuing = top.sub("issuing")
    issuing_store = _store(issuing.sub("store"))
    raw_keys = issuing.get("keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        raise issuing.fail("keys", "must list one [[issuing.keys]] per issuing purpose")
    keys = tuple(_key(issuing.sub("keys", index=i), root=False) for i in range(len(raw_keys)))
    issuing.done()

    outputs_reader = top.sub("outputs")
    paths = [outputs_reader.path(n) for n in ("root-jwk", "trust-list", "jwks", "transcript")]
    outputs_reader.done()
    top.done()
    root_jwk, trust_list, jwks, transcript = (p for p in paths if p is not None)
    outputs = Outputs(root_jwk=root_jwk, trust_list=trust_list, jwks=jwks, transcript=transcript)

    seen: dict[KeyPurpose, int] = {}
    for i, key in enumerate(keys):
        if key.purpose in seen:
            raise CeremonyConfigError(
                source,
                f"issuing.keys[{i}].purpose",
                f"{key.purpose.value} is already issuing.keys[{seen[key.purpose]}]",
            )
        seen[key.purpose] = i
    missing = [p.value for p in ISSUING_PURPOSES if p not in seen]
    if missing:
        raise CeremonyConfigError(
            source, "issuing.keys", f"no key for purpose {', '.join(missing)}"
        )
    labels: dict[str, str] = {root.label: "root.label"}
    for i, key in enumerate(keys):
        where = f"issuing.keys[{i}].label"
        if key.label in labels:
            raise CeremonyConfigError(
                source, where, f"label {key.label!r} is already {labels[key.label]}"
            )
        labels[key.label] = where
    if _same_store(root_store, issuing_store):
        raise CeremonyConfigError(
            source, "root.store", "the root needs its own token or directory, not the issuer's"
        )
    resolved = [p.resolve() for p in outputs.all()]
    if len(set(resolved)) != len(resolved):
        raise CeremonyConfigError(source, "outputs", "two outputs name the same file")
    return CeremonyConfig(
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
        name=name,
        issuer=issuer,
        trust_list_lifetime_hours=lifetime,
        root=root,
        root_store=root_store,
        issuing_store=issuing_store,
        keys=keys,
        outputs=outputs,
    )


def load_config(source: Path) -> CeremonyConfig:
    try:
        with source.open("rb") as handle:
            data = handle.read(MAX_CONFIG_SIZE + 1)
    except OSError as exc:
        raise CeremonyConfigError(source, "the file", f"cannot be read: {exc.strerror}") from None
    return parse_config(source, data)
