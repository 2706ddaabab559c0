"""The PKCS#11 key store on SoftHSM2: keys made and kept on the token, signatures made by
it, metadata on it, and a typed refusal to start for every way a token can be unfit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from cardsvc.core.keys import ISSUING_PURPOSES, KeyPurpose
from cardsvc.core.signing import is_high_s
from cardsvc.core.trustlist import TrustList
from cardsvc.errors import (
    ConfigurationError,
    HsmKeyError,
    HsmModuleError,
    HsmPinError,
    HsmTokenNotFoundError,
    KeyStoreError,
    SigningUnavailableError,
)
from cardsvc.keystore.open import Pkcs11Config, open_backend
from cardsvc.keystore.pkcs11 import INDEX_APPLICATION, INDEX_LABEL, Pkcs11Backend
from cardsvc.keystore.pkcs11_sessions import load_module
from cardsvc.keystore.service import KeyPolicy, KeyService
from cardsvc.settings import Settings
from tests.softhsm import Token

pytestmark = pytest.mark.softhsm

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = KeyPolicy(cache_ttl=timedelta(minutes=5))


def hsm_settings(token: Token, folder: Path, **update: object) -> Settings:
    return token.settings(Settings(key_dir=folder / "keys"), folder, **update)


def open_store(token: Token, folder: Path, **update: object) -> Pkcs11Backend:
    backend = open_backend(hsm_settings(token, folder, **update).key_store())
    assert isinstance(backend, Pkcs11Backend)
    return backend


@pytest.fixture
def store(hsm_token: Token, tmp_path: Path) -> Iterator[Pkcs11Backend]:
    """A token with the root key and one key per issuing purpose on it."""
    backend = open_store(hsm_token, tmp_path)
    KeyService(backend, POLICY, issuer="https://issuer.test").init(now=NOW)
    yield backend
    backend.close()


@contextmanager
def on_token(token: Token) -> Iterator[pkcs11.Session]:
    """A read-write session logged in to ``token``, as an administrator's tool would
    have (no key store may be open on it at the same time: closing this logs out)."""
    module = load_module(token.hsm.module, token_label=token.label)
    try:
        found = module.lib.get_token(token_label=token.label)
    except pkcs11.NoSuchToken:
        module.reinitialize(module.generation)
        found = module.lib.get_token(token_label=token.label)
    session = found.open(rw=True, user_pin=token.pin)
    try:
        yield session
    finally:
        session.close()


def test_keys_are_generated_on_the_token_non_extractable_sign_only(
    store: Pkcs11Backend, hsm_token: Token
) -> None:
    records = store.records()
    assert sorted(r.purpose for r in records) == sorted([KeyPurpose.ROOT, *ISSUING_PURPOSES])
    labels = store.labels()
    store.close()
    p256 = encode_named_curve_parameters("secp256r1")
    with on_token(hsm_token) as session:
        for record in records:
            label = labels[record.kid]
            private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
            public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
            assert private[Attribute.KEY_TYPE] == KeyType.EC
            assert bytes(private[Attribute.EC_PARAMS]) == p256
            assert private[Attribute.TOKEN] and private[Attribute.PRIVATE]
            assert private[Attribute.SENSITIVE] and private[Attribute.ALWAYS_SENSITIVE]
            assert not private[Attribute.EXTRACTABLE] and private[Attribute.NEVER_EXTRACTABLE]
            assert private[Attribute.LOCAL]  # generated on the token, not imported
            assert private[Attribute.SIGN]
            assert not private[Attribute.DECRYPT] and not private[Attribute.UNWRAP]
            assert not private[Attribute.DERIVE]
            with pytest.raises(pkcs11.AttributeSensitive):
                private[Attribute.VALUE]
            # The kid is the thumbprint of the public key as the token holds it.
            point = bytes(public[Attribute.EC_POINT])[2:]
            assert point == record.key.public_key.public_bytes(
                Encoding.X962, PublicFormat.UncompressedPoint
            )


def test_key_attributes_as_the_token_reports_them(store: Pkcs11Backend) -> None:
    record = next(r for r in store.records() if r.purpose is KeyPurpose.ROOT)
    attributes = store.key_attributes(record.kid)
    assert attributes["label"] == store.labels()[record.kid]
    assert (attributes["key_type"], attributes["curve"]) == ("EC", "P-256")
    assert attributes["SENSITIVE"] and attributes["ALWAYS_SENSITIVE"] and attributes["LOCAL"]
    assert not attributes["EXTRACTABLE"] and attributes["NEVER_EXTRACTABLE"]
    assert attributes["SIGN"] and not attributes["DECRYPT"] and not attributes["DERIVE"]
    assert len(str(attributes["id"])) == 32


def test_token_signatures_verify_in_low_s_form(store: Pkcs11Backend) -> None:
    keys = KeyService(store, POLICY, issuer="https://issuer.test")
    signer = keys.signer(KeyPurpose.ECARD, now=NOW)
    for n in range(200):
        data = f"message {n}".encode()
        signature = signer.sign(data)
        assert len(signature) == 64 and not is_high_s(signature)
        signer.verifying_key().verify_raw(signature, data)
    assert signer.kid == signer.verifying_key().kid


def test_metadata_lives_on_the_token_and_survives_reopening(
    store: Pkcs11Backend, hsm_token: Token, tmp_path: Path
) -> None:
    keys = KeyService(store, POLICY, issuer="https://issuer.test")
    token = keys.issue_trust_list(now=NOW)
    rotated = keys.rotate(KeyPurpose.ECARD, now=NOW)
    before = store.records()
    store.close()
    assert not (tmp_path / "keys").exists()  # nothing on the issuer's disk

    again = open_store(hsm_token, tmp_path)
    try:
        assert again.records() == before
        assert again.trust_list_sequence() == 0
        assert rotated.new.kid in again.labels()
        trust_list = TrustList.verify(token, root=keys.root_key(), now=NOW, leeway=timedelta(0))
        assert trust_list.sequence == 0
    finally:
        again.close()


def test_a_crash_between_writing_and_removing_metadata_keeps_the_newest(
    store: Pkcs11Backend, hsm_token: Token, tmp_path: Path
) -> None:
    store.commit(store.records(), trust_list_sequence=7)
    store.close()
    # A stale older generation left behind, as a crash before the old one's removal would.
    with on_token(hsm_token) as session:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.APPLICATION: INDEX_APPLICATION,
                Attribute.LABEL: INDEX_LABEL,
                Attribute.VALUE: b'{"version":1,"generation":1,"trust_list_sequence":-1,"keys":[]}',
            }
        )
    again = open_store(hsm_token, tmp_path)
    try:
        assert again.trust_list_sequence() == 7 and len(again.records()) == 7
        again.commit(again.records(), trust_list_sequence=8)
    finally:
        again.close()
    with on_token(hsm_token) as session:
        left = list(session.get_objects({Attribute.CLASS: ObjectClass.DATA}))
        assert len(left) == 1  # the next commit removed every older generation


def test_a_label_already_on_the_token_is_never_reused(store: Pkcs11Backend) -> None:
    label = next(iter(store.labels().values()))
    with pytest.raises(KeyStoreError, match="already has an object labelled"):
        store.generate(KeyPurpose.ECARD, label=label)
    key = store.generate(KeyPurpose.ECARD, label="ceremony-ecard-2027")
    assert key.kid not in store.labels()  # not part of the store before a commit


def test_eight_threads_sign_500_times_each_through_the_pool(
    hsm_token: Token, tmp_path: Path
) -> None:
    backend = open_store(hsm_token, tmp_path, pkcs11_sessions=4)
    try:
        keys = KeyService(backend, POLICY, issuer="https://issuer.test")
        keys.init(now=NOW)
        signer = keys.signer(KeyPurpose.ECARD, now=NOW)
        key = signer.verifying_key()
        failures: list[BaseException] = []
        results: dict[int, list[tuple[bytes, bytes]]] = {}

        def work(n: int) -> None:
            try:
                out = []
                for i in range(500):
                    data = f"thread {n} message {i}".encode()
                    out.append((data, signer.sign(data)))
                results[n] = out
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert sum(len(v) for v in results.values()) == 4000
        for out in results.values():
            for data, signature in out:
                key.verify_raw(signature, data)
        assert backend.pool.size == 4
    finally:
        backend.close()


# -- refusing to start ------------------------------------------------------------------


def test_wrong_pin_is_refused_by_name(store: Pkcs11Backend, hsm_token: Token, tmp_path: Path):
    store.close()
    folder = tmp_path / "wrong"
    folder.mkdir()
    with pytest.raises(HsmPinError, match="refused the PIN") as caught:
        open_backend(
            hsm_settings(hsm_token, folder)
            .model_copy(update={"pkcs11_pin_file": hsm_token.pin_file(folder, "000000")})
            .key_store()
        )
    assert caught.value.token == hsm_token.label
    assert "000000" not in caught.value.detail


def test_no_pin_is_refused(hsm_token: Token, tmp_path: Path) -> None:
    with pytest.raises(HsmPinError, match="no PIN configured"):
        open_store(hsm_token, tmp_path, pkcs11_pin_file=None)
    with pytest.raises(HsmPinError, match="cannot read the PIN file"):
        open_store(hsm_token, tmp_path, pkcs11_pin_file=tmp_path / "missing.pin")


def test_missing_module_and_a_file_that_is_not_one(hsm_token: Token, tmp_path: Path) -> None:
    with pytest.raises(HsmModuleError, match="no such file"):
        open_store(hsm_token, tmp_path, pkcs11_module=tmp_path / "libnothing.so")
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"not a shared library")
    with pytest.raises(HsmModuleError, match="does not load"):
        open_store(hsm_token, tmp_path, pkcs11_module=junk)


def test_missing_token_is_named_with_those_present(hsm_token: Token, tmp_path: Path) -> None:
    with pytest.raises(HsmTokenNotFoundError, match="no token labelled 'no-such-token'") as c:
        open_store(hsm_token, tmp_path, pkcs11_token_label="no-such-token")
    assert hsm_token.label in c.value.present


def test_pkcs11_settings_must_name_module_and_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CARDSVC_PKCS11_MODULE and "):
        Settings(key_backend="pkcs11").key_store()


def test_sm2_keys_are_refused_on_the_token_and_in_the_settings(
    store: Pkcs11Backend, hsm_token: Token, tmp_path: Path
) -> None:
    labels = dict(store.labels())
    with pytest.raises(KeyStoreError, match="ES256 keys only, not SM2SM3"):
        store.generate(KeyPurpose.ECARD, alg="SM2SM3")
    assert store.labels() == labels
    with pytest.raises(ConfigurationError, match=r"SM2SM3: ecard$"):
        hsm_settings(
            hsm_token, tmp_path, purpose_algorithms={KeyPurpose.ECARD: "SM2SM3"}
        ).key_store()


def _replace_key(token: Token, label: str, make: str) -> None:
    """Destroy the pair labelled ``label`` and put ``make`` in its place."""
    with on_token(token) as session:
        for obj in session.get_objects({Attribute.LABEL: label}):
            obj.destroy()
        if make == "missing":
            return
        if make == "rsa":
            session.generate_keypair(
                KeyType.RSA, 2048, label=label, store=True,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            )  # fmt: skip
            return
        curve = "secp384r1" if make == "p384" else "secp256r1"
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True
        )
        private = {
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: make == "extractable",
            # python-pkcs11's default template lets EC keys derive too.
            Attribute.DERIVE: make == "derive-too",
            Attribute.SIGN_RECOVER: False,
        }
        params.generate_keypair(store=True, label=label, private_template=private)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        ("missing", "no private key with this label"),
        ("rsa", "is a RSA key, not EC P-256"),
        ("p384", "is not on the curve P-256"),
        ("extractable", "extractable or not sensitive"),
        ("derive-too", "allows DERIVE as well as signing"),
        ("other-p256", "public key on the token has kid"),
    ],
)
def test_an_unfit_key_on_the_token_stops_the_start(
    store: Pkcs11Backend, hsm_token: Token, tmp_path: Path, make: str, reason: str
) -> None:
    records = store.records()
    label = store.labels()[records[1].kid]
    store.close()
    _replace_key(hsm_token, label, "p256" if make == "other-p256" else make)
    with pytest.raises(HsmKeyError) as caught:
        open_store(hsm_token, tmp_path)
    assert reason in caught.value.detail
    assert caught.value.label == label


def test_an_extractable_key_anywhere_on_the_token_stops_the_start(
    store: Pkcs11Backend, hsm_token: Token, tmp_path: Path
) -> None:
    store.close()
    with on_token(hsm_token) as session:
        session.generate_key(
            KeyType.AES, 256, label="someone-elses", store=True,
            template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
        )  # fmt: skip
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )  # fmt: skip
        params.generate_keypair(
            store=True, label="exportable", private_template={Attribute.EXTRACTABLE: True}
        )
    with pytest.raises(HsmKeyError, match=r"'exportable'.*extractable"):
        open_store(hsm_token, tmp_path)


def test_the_cli_names_the_problem_and_never_falls_back_to_files(
    hsm_token: Token, tmp_path: Path
) -> None:
    # A complete file store sits in the key directory: a PKCS#11 misconfiguration must not
    # quietly sign with it.
    file_env = {"CARDSVC_KEY_DIR": str(tmp_path / "keys"), "CARDSVC_KEY_PASSPHRASE": "pw"}
    cli = [sys.executable, "-c", "from cardsvc.cli.main import main; main()"]
    base = {**os.environ, **file_env, "CARDSVC_DATABASE_URL": f"sqlite:///{tmp_path}/db"}
    subprocess.run([*cli, "keys", "init"], env=base, check=True, capture_output=True)
    hsm_env = {
        **base,
        "CARDSVC_KEY_BACKEND": "pkcs11",
        "CARDSVC_PKCS11_MODULE": str(hsm_token.hsm.module),
        "CARDSVC_PKCS11_TOKEN_LABEL": hsm_token.label,
        "CARDSVC_PKCS11_PIN_FILE": str(hsm_token.pin_file(tmp_path, "999999")),
    }
    result = subprocess.run(
        [*cli, "keys", "list"], env=hsm_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: PKCS#11 token {hsm_token.label!r}: the token refused the PIN"
    )
    assert "Traceback" not in result.stderr
    result = subprocess.run(
        [*cli, "keys", "list"],
        env={**hsm_env, "CARDSVC_PKCS11_TOKEN_LABEL": "gone"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "no token labelled 'gone'" in result.stderr


# -- failures while running -------------------------------------------------------------


def test_token_taken_away_then_back_is_unavailable_then_recovered(
    store: Pkcs11Backend, hsm_token: Token
) -> None:
    keys = KeyService(store, POLICY, issuer="https://issuer.test")
    signer = keys.signer(KeyPurpose.CARD_DOCUMENT, now=NOW)
    signer.sign(b"before")
    hsm_token.remove()
    try:
        # Verification needs only public keys: the records still serve, also once they
        # are due to be read again (a token seen empty is not an empty key store).
        time.sleep(1.1)
        assert len(keys.records()) == 7 and store.exists()
        for _ in range(3):
            with pytest.raises(SigningUnavailableError) as caught:
                signer.sign(b"while away")
            assert caught.value.retry_after >= 2
    finally:
        hsm_token.restore()
    signature = signer.sign(b"after")
    signer.verifying_key().verify_raw(signature, b"after")


def test_a_reinitialised_module_invalidates_sessions_and_signing_carries_on(
    store: Pkcs11Backend, hsm_token: Token
) -> None:
    signer = store.signer(store.records()[2].kid)
    signer.sign(b"first")
    # Every session handle of the process dies (CKR_SESSION_HANDLE_INVALID, or the
    # module not initialised), as after an HSM restart: the next signature reopens.
    module = load_module(hsm_token.hsm.module, token_label=hsm_token.label)
    module.initializer.finalize()
    module.initializer.initialize()
    signer.verifying_key().verify_raw(signer.sign(b"second"), b"second")


def test_wrong_pin_after_a_restart_is_unavailable_and_not_retried_until_it_changes(
    hsm_token: Token, tmp_path: Path
) -> None:
    backend = open_store(hsm_token, tmp_path)
    try:
        keys = KeyService(backend, POLICY, issuer="https://issuer.test")
        keys.init(now=NOW)
        signer = keys.signer(KeyPurpose.ECARD, now=NOW)
        pin_file = hsm_token.pin_file(tmp_path, "654321")  # the PIN file now says otherwise
        hsm_token.remove()
        with pytest.raises(SigningUnavailableError):
            signer.sign(b"token away")
        hsm_token.restore()
        with pytest.raises(SigningUnavailableError, match="refused the PIN"):
            signer.sign(b"token back, wrong PIN")
        with pytest.raises(SigningUnavailableError, match="not tried again"):
            signer.sign(b"the same wrong PIN is not tried again")
        pin_file.write_text(hsm_token.pin + "\n")
        signer.verifying_key().verify_raw(signer.sign(b"fixed"), b"fixed")
    finally:
        backend.close()


# -- parsers: the key index on the token, the PIN file ---------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_index_documents = st.one_of(
    st.binary(max_size=200),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"version": st.sampled_from([1, 2, "1"]), "generation": _json_values},
        optional={"trust_list_sequence": _json_values, "keys": _json_values},
    ).map(lambda v: json.dumps(v).encode()),
)


@hsettings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_index_documents)
def test_a_damaged_key_index_is_a_typed_refusal(
    store: Pkcs11Backend, hsm_token: Token, tmp_path: Path, value: bytes
) -> None:
    store.close()
    with on_token(hsm_token) as session:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.APPLICATION: INDEX_APPLICATION,
                Attribute.LABEL: INDEX_LABEL,
                Attribute.VALUE: value,
            }
        )
    try:
        try:
            backend = open_store(hsm_token, tmp_path)
        except HsmKeyError as exc:
            assert exc.label == INDEX_LABEL and "key index" in exc.detail
        else:
            backend.close()  # a lower generation than the real index: it is not read
    finally:
        with on_token(hsm_token) as session:
            for obj in session.get_objects(
                {Attribute.CLASS: ObjectClass.DATA, Attribute.VALUE: value}
            ):
                obj.destroy()


@given(raw=st.binary(max_size=64))
def test_a_pin_file_gives_a_pin_or_a_typed_refusal(tmp_path_factory, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("pin")
    pin_file = folder / "pin"
    pin_file.write_bytes(raw)
    config = Settings(
        key_backend="pkcs11",
        pkcs11_module=folder / "lib.so",
        pkcs11_token_label="t",
        pkcs11_pin_file=pin_file,
    ).key_store()
    assert isinstance(config, Pkcs11Config)
    try:
        pin = config.pin_reader()()
    except HsmPinError as exc:
        assert str(pin_file) in exc.detail
    else:
        assert pin and pin == raw.splitlines()[0].decode()
