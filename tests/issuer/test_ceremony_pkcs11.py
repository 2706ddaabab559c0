"""The key ceremony on SoftHSM2: the root on its own token, the issuing keys on the
issuer's, attributes read back from the token into the transcript, and the offline root
signing on its token; through the real command."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from cardsvc.core.keys import ISSUING_PURPOSES, KeyPurpose, VerifyingKey
from cardsvc.core.trustlist import TrustList
from cardsvc.keystore.offline import OfflineRoot
from cardsvc.keystore.open import Pkcs11Config, open_backend
from cardsvc.keystore.service import KeyPolicy, KeyService
from cardsvc.services import utcnow
from tests.issuer.ceremony_helpers import ISSUER, ceremony_dir, ceremony_toml, run_cli
from tests.softhsm import SoftHsm, Token

pytestmark = pytest.mark.softhsm


def pkcs11_toml(hsm: SoftHsm, root: Token, issuing: Token, *, out: str = "out") -> str:
    text = ceremony_toml(out=out)
    text = text.replace(
        'backend = "file"\ndirectory = "root-store"\npassphrase-file = "root.pass"\n',
        f'backend = "pkcs11"\nmodule = "{hsm.module}"\ntoken-label = "{root.label}"\n'
        'pin-file = "root.pin"\n',
    )
    return text.replace(
        'backend = "file"\ndirectory = "issuer-keys"\npassphrase-env = "ISSUER_PASS"\n',
        f'backend = "pkcs11"\nmodule = "{hsm.module}"\ntoken-label = "{issuing.label}"\n'
        'pin-env = "ISSUER_PIN"\n',
    )


@pytest.fixture
def tokens(softhsm: SoftHsm, tmp_path: Path) -> tuple[Token, Token]:
    root, issuing = softhsm.new_token(), softhsm.new_token()
    (tmp_path / "root.pin").write_text(root.pin + "\n")
    return root, issuing


def open_token(hsm: SoftHsm, token: Token) -> KeyService:
    backend = open_backend(Pkcs11Config(module=hsm.module, token_label=token.label, pin=token.pin))
    return KeyService(backend, KeyPolicy(), issuer=ISSUER)


def test_the_ceremony_on_two_tokens(
    softhsm: SoftHsm, tokens: tuple[Token, Token], tmp_path: Path
) -> None:
    root_token, issuing_token = tokens
    ceremony_dir(tmp_path, pkcs11_toml(softhsm, root_token, issuing_token))
    env = {"ISSUER_PIN": issuing_token.pin}
    check = run_cli(tmp_path, "ceremony", "check", "ceremony.toml", env=env)
    assert check.returncode == 0, check.stderr
    assert f"PKCS#11 token {root_token.label!r}" in check.stdout
    assert not open_token(softhsm, root_token).backend.exists()  # check touched nothing

    result = run_cli(tmp_path, "ceremony", "run", "ceremony.toml", env=env)
    assert result.returncode == 0, result.stderr
    transcript = json.loads((tmp_path / "out" / "transcript.json").read_text())
    for entry in [transcript["root"], *transcript["keys"]]:
        attributes = entry["attributes"]
        assert attributes["backend"] == "pkcs11"
        assert attributes["label"] == entry["label"]
        assert attributes["key_type"] == "EC" and attributes["curve"] == "P-256"
        assert attributes["SENSITIVE"] is True and attributes["EXTRACTABLE"] is False
        assert attributes["NEVER_EXTRACTABLE"] is True and attributes["SIGN"] is True
        assert attributes["DECRYPT"] is False and attributes["DERIVE"] is False
        assert attributes["TOKEN"] is True and attributes["PRIVATE"] is True
    assert transcript["root"]["attributes"]["token_label"] == root_token.label
    assert {e["attributes"]["token_label"] for e in transcript["keys"]} == {issuing_token.label}

    # The root is on its token alone; the issuer's token never holds it.
    root_keys = open_token(softhsm, root_token)
    assert [r.purpose for r in root_keys.records()] == [KeyPurpose.ROOT]
    issuing_keys = open_token(softhsm, issuing_token)
    assert sorted(r.purpose for r in issuing_keys.records()) == sorted(ISSUING_PURPOSES)
    pinned = VerifyingKey.from_jwk(json.loads((tmp_path / "out" / "root.jwk").read_text()))
    assert root_keys.records()[0].kid == pinned.kid
    TrustList.verify((tmp_path / "out" / "trust-list.jws").read_text().strip(), root=pinned,
                     now=utcnow(), leeway=timedelta(seconds=5))  # fmt: skip

    # Again on the same tokens, to new outputs: the tokens are in use.
    ceremony_dir(tmp_path, pkcs11_toml(softhsm, root_token, issuing_token, out="out2"),
                 name="again.toml")  # fmt: skip
    again = run_cli(tmp_path, "ceremony", "run", "again.toml", env=env)
    assert again.returncode == 1 and "holds keys already" in again.stderr
    assert len(open_token(softhsm, root_token).records()) == 1

    # The online issuer on its token, with the root offline: install, rotate, sign on the
    # root's token, install; the new key signs on the issuer's token.
    issuer_env = {
        "CARDSVC_KEY_BACKEND": "pkcs11",
        "CARDSVC_PKCS11_MODULE": str(softhsm.module),
        "CARDSVC_PKCS11_TOKEN_LABEL": issuing_token.label,
        "CARDSVC_PKCS11_PIN_FILE": str(issuing_token.pin_file(tmp_path)),
        "CARDSVC_OFFLINE_ROOT": "true",
        "CARDSVC_KEY_DIR": str(tmp_path / "issuer-state"),
        "CARDSVC_ROOT_KEY_FILE": str(tmp_path / "out" / "root.jwk"),
        "CARDSVC_ISSUER": ISSUER,
        "CARDSVC_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    steps = [
        ("keys", "import-trust-list", "out/trust-list.jws"),
        ("keys", "prepare-trust-list", "--rotate", "ecard", "--out", "next.json"),
    ]
    for step in steps:
        done = run_cli(tmp_path, *step, env=issuer_env)
        assert done.returncode == 0, done.stderr
    signed = run_cli(tmp_path, "ceremony", "sign-trust-list", "ceremony.toml", "next.json",
                     "--out", "next.jws", env=env)  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    imported = run_cli(tmp_path, "keys", "import-trust-list", "next.jws", env=issuer_env)
    assert imported.returncode == 0 and "sequence 1" in imported.stdout, imported.stderr

    online = open_token(softhsm, issuing_token)
    online.offline_root = OfflineRoot(tmp_path / "out" / "root.jwk",
                                      tmp_path / "issuer-state" / "trust-list.jws")  # fmt: skip
    later = utcnow() + timedelta(minutes=6)
    new = online.signing_record(KeyPurpose.ECARD, now=later)
    assert new.kid not in {e["kid"] for e in transcript["keys"]}
    signer = online.signer(KeyPurpose.ECARD, now=later)
    new.key.verify_raw(signer.sign(b"data"), b"data")  # made by the issuer's token


def test_a_label_taken_on_a_token_is_refused_before_any_key_is_made(
    softhsm: SoftHsm, tokens: tuple[Token, Token], tmp_path: Path
) -> None:
    root_token, issuing_token = tokens
    squatter = open_token(softhsm, issuing_token)
    squatter.backend.generate(KeyPurpose.ECARD, label="ecard 2026")  # type: ignore[call-arg]
    ceremony_dir(tmp_path, pkcs11_toml(softhsm, root_token, issuing_token))
    result = run_cli(tmp_path, "ceremony", "run", "ceremony.toml",
                     env={"ISSUER_PIN": issuing_token.pin})  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert "an object labelled 'ecard 2026' is on it already" in result.stderr
    assert not open_token(softhsm, root_token).backend.exists()
    assert not (tmp_path / "out").exists()
