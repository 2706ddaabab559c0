"""`cardsvc ceremony check|run|sign-trust-list` and the offline root's trust lists,
through the real command: a process, real files."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from cardsvc.core.keys import ISSUING_PURPOSES, KeyPurpose, VerifyingKey
from cardsvc.core.trustlist import TrustList
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.services import utcnow
from tests.issuer.ceremony_helpers import (
    ISSUER,
    ceremony_dir,
    ceremony_toml,
    issuer_env,
    run_cli,
)


@pytest.fixture
def done(tmp_path: Path) -> Path:
    """A ceremony that ran: root store, issuer store and outputs under ``tmp_path``."""
    ceremony_dir(tmp_path)
    result = run_cli(tmp_path, "ceremony", "run", "ceremony.toml")
    assert result.returncode == 0, result.stderr
    return tmp_path


def created_nothing(tmp_path: Path) -> bool:
    return not any((tmp_path / name).exists() for name in ("root-store", "issuer-keys", "out"))


def test_check_validates_without_creating_anything(tmp_path: Path) -> None:
    ceremony_dir(tmp_path)
    result = run_cli(tmp_path, "ceremony", "check", "ceremony.toml")
    assert result.returncode == 0, result.stderr
    assert "root 'root 2026'" in result.stdout and "nothing was created" in result.stdout
    for purpose in ISSUING_PURPOSES:
        assert purpose.value in result.stdout
    assert created_nothing(tmp_path)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (ceremony_toml(extra_top='colour = "blue"\n'), "colour: unknown field"),
        (ceremony_toml(purposes=("card-document", "ecard")), "no key for purpose"),
        (ceremony_toml(labels={"ecard": "card-document 2026"}), "is already issuing.keys[0]"),
    ],
)
@pytest.mark.parametrize("command", ["check", "run"])
def test_a_bad_file_is_refused_before_any_key_is_made(
    tmp_path: Path, text: str, says: str, command: str
) -> None:
    ceremony_dir(tmp_path, text)
    result = run_cli(tmp_path, "ceremony", command, "ceremony.toml")
    assert result.returncode == 1 and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert created_nothing(tmp_path)


def test_run_makes_the_keys_on_their_stores_and_writes_outputs_and_transcript(
    done: Path,
) -> None:
    out = done / "out"
    root = VerifyingKey.from_jwk(json.loads((out / "root.jwk").read_text()))
    token = (out / "trust-list.jws").read_text().strip()
    trust_list = TrustList.verify(token, root=root, now=utcnow(), leeway=timedelta(seconds=5))
    assert trust_list.sequence == 0 and trust_list.issuer == ISSUER
    assert sorted(k.purpose for k in trust_list.keys) == sorted(ISSUING_PURPOSES)

    # The root alone on its store; the issuer's store never holds it.
    root_store = FileKeyBackend(done / "root-store", None).records()
    assert [(r.purpose, r.kid) for r in root_store] == [(KeyPurpose.ROOT, root.kid)]
    issuer_store = FileKeyBackend(done / "issuer-keys", None).records()
    assert KeyPurpose.ROOT not in {r.purpose for r in issuer_store}
    assert {r.kid for r in issuer_store} == {k.key.kid for k in trust_list.keys}
    assert not (done / "issuer-keys" / "private" / f"{root.kid}.pem").exists()

    jwks = json.loads((out / "jwks.json").read_text())
    assert {k["kid"] for k in jwks["keys"]} == {k.key.kid for k in trust_list.keys}

    transcript = json.loads((out / "transcript.json").read_text())
    config_sha = hashlib.sha256((done / "ceremony.toml").read_bytes()).hexdigest()
    assert transcript["config"]["sha256"] == config_sha
    assert transcript["root"]["kid"] == root.kid and transcript["root"]["label"] == "root 2026"
    assert {(k["purpose"], k["kid"]) for k in transcript["keys"]} == {
        (r.purpose.value, r.kid) for r in issuer_store
    }
    for entry in [transcript["root"], *transcript["keys"]]:
        assert entry["attributes"]["curve"] == "P-256" and entry["attributes"]["backend"] == "file"
        assert entry["key_type"] == "ecdsa-p256"
        assert entry["label"]
    assert transcript["trust_list"]["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    for name, file in [("root-jwk", "root.jwk"), ("trust-list", "trust-list.jws"),
                       ("jwks", "jwks.json")]:  # fmt: skip
        digest = hashlib.sha256((out / file).read_bytes()).hexdigest()
        assert transcript["outputs"][name]["sha256"] == digest
    # Public outputs only: no private key, no passphrase anywhere in them.
    for output in out.iterdir():
        text = output.read_text()
        assert "PRIVATE" not in text and "passphrase" not in text.replace(
            "encrypted with the store passphrase", ""
        )


def test_run_again_refuses_to_overwrite_outputs_or_reuse_a_store(done: Path) -> None:
    before = {p: p.read_bytes() for p in (done / "out").iterdir()}
    again = run_cli(done, "ceremony", "run", "ceremony.toml")
    assert again.returncode == 1 and "output exists already" in again.stderr
    # New outputs, but the stores already hold keys: reuse refused.
    ceremony_dir(done, ceremony_toml(out="out2"), name="again.toml")
    reuse = run_cli(done, "ceremony", "run", "again.toml")
    assert reuse.returncode == 1 and "holds keys already" in reuse.stderr
    assert not (done / "out2").exists()
    check = run_cli(done, "ceremony", "check", "again.toml")
    assert check.returncode == 1 and "holds keys already" in check.stderr
    assert {p: p.read_bytes() for p in (done / "out").iterdir()} == before
    assert len(FileKeyBackend(done / "root-store", None).records()) == 1


def test_a_missing_secret_is_named_before_any_key_is_made(tmp_path: Path) -> None:
    ceremony_dir(tmp_path)
    (tmp_path / "root.pass").unlink()
    result = run_cli(tmp_path, "ceremony", "run", "ceremony.toml")
    assert result.returncode == 1 and "root.pass does not exist" in result.stderr
    assert created_nothing(tmp_path)


# -- the offline root: prepare, sign offline, import ------------------------------------


def issuer(done: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli(done, *args, env=issuer_env(done))
    return result.returncode, result.stdout, result.stderr


def prepare(done: Path, name: str, *rotate: str) -> Path:
    flags = [a for p in rotate for a in ("--rotate", p)]
    code, _, err = issuer(done, "keys", "prepare-trust-list", "--out", name, *flags)
    assert code == 0, err
    return done / name


def sign(done: Path, unsigned: Path, name: str, config: str = "ceremony.toml") -> Path:
    result = run_cli(done, "ceremony", "sign-trust-list", config, str(unsigned), "--out", name)
    assert result.returncode == 0, result.stderr
    return done / name


def test_the_offline_root_cycle_installs_only_what_the_pinned_root_signed(done: Path) -> None:
    code, _, err = issuer(done, "db", "upgrade")
    assert code == 0, err
    code, out, err = issuer(done, "keys", "import-trust-list", "out/trust-list.jws")
    assert code == 0 and "installed trust list sequence 0" in out, err

    # The online issuer cannot sign a trust list: it has no root.
    code, _, err = issuer(done, "keys", "export-trust-list")
    assert code == 1 and "offline root" in err
    code, _, err = issuer(done, "keys", "rotate", "ecard")
    assert code == 1 and "prepare-trust-list --rotate ecard" in err
    code, out, _ = issuer(done, "keys", "export-root")
    pinned = json.loads((done / "out" / "root.jwk").read_text())
    assert json.loads(out)["kid"] == pinned["kid"]

    old_ecard = next(
        k["kid"] for k in json.loads((done / "out" / "jwks.json").read_text())["keys"]
        if k["purpose"] == "ecard"
    )
    unsigned = prepare(done, "next.json", "ecard")
    claims = json.loads(unsigned.read_text())
    assert claims["seq"] == 1
    new_ecard = [k["kid"] for k in claims["keys"] if k["purpose"] == "ecard"]
    assert len(new_ecard) == 2
    signed = sign(done, unsigned, "next.jws")
    code, out, err = issuer(done, "keys", "import-trust-list", str(signed))
    assert code == 0 and "sequence 1" in out, err
    code, out, err = issuer(done, "keys", "list")
    assert code == 0 and "trust list sequence 1 installed, expires" in out, err

    # Replays and older lists are refused; so is the root signing a sequence twice.
    for old in (signed, done / "out" / "trust-list.jws"):
        code, _, err = issuer(done, "keys", "import-trust-list", str(old))
        assert code == 1 and "(sequence)" in err, err
    again = run_cli(done, "ceremony", "sign-trust-list", "ceremony.toml", str(unsigned),
                    "--out", "twice.jws")  # fmt: skip
    assert again.returncode == 1 and "already signed sequence 1" in again.stderr

    # Tampered: one byte of the payload changed after signing.
    header, payload, signature = (done / "next.jws").read_text().strip().split(".")
    claims_then = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims_then["seq"] = 7
    forged = base64.urlsafe_b64encode(json.dumps(claims_then).encode()).rstrip(b"=").decode()
    (done / "tampered.jws").write_text(f"{header}.{forged}.{signature}\n")
    code, _, err = issuer(done, "keys", "import-trust-list", "tampered.jws")
    assert code == 1 and "(signature)" in err, err

    # Signed by another root (a second ceremony's): refused against the pinned one.
    other = done / "other"
    other.mkdir()
    ceremony_dir(other)
    assert run_cli(other, "ceremony", "run", "ceremony.toml").returncode == 0
    unsigned2 = prepare(done, "next2.json")
    foreign = run_cli(other, "ceremony", "sign-trust-list", "ceremony.toml", str(unsigned2),
                      "--out", str(done / "foreign.jws"))  # fmt: skip
    assert foreign.returncode == 0, foreign.stderr
    code, _, err = issuer(done, "keys", "import-trust-list", "foreign.jws")
    assert code == 1 and "(key-unknown)" in err and "pinned root" in err, err

    # The audit log holds the staged key, the rotation and both imports; it verifies.
    with sqlite3.connect(done / "db.sqlite") as db:
        events = db.execute("SELECT kind, subject, data FROM audit_leaves ORDER BY idx").fetchall()
    by_kind = [(kind, subject) for kind, subject, _ in events]
    new_kid = next(k for k in new_ecard if k != old_ecard)
    assert ("key.created", f"key:{new_kid}") in by_kind
    assert ("key.created", f"key:{old_ecard}") in by_kind  # the ceremony's, at first import
    assert ("key.trust_list", "trust-list:0") in by_kind
    assert ("key.trust_list", "trust-list:1") in by_kind
    rotated = [json.loads(d)["data"] for kind, subject, d in events
               if (kind, subject) == ("key.rotated", f"key:{new_kid}")]  # fmt: skip
    assert len(rotated) == 1 and rotated[0]["retired"] == [old_ecard]
    code, out, err = issuer(done, "audit", "verify")
    assert code == 0, err + out


def test_the_offline_side_refuses_another_issuers_list_and_a_foreign_root_store(
    done: Path, tmp_path: Path
) -> None:
    assert issuer(done, "keys", "import-trust-list", "out/trust-list.jws")[0] == 0
    unsigned = prepare(done, "next.json")
    claims = json.loads(unsigned.read_text())
    claims["iss"] = "https://elsewhere.test"
    (done / "elsewhere.json").write_text(json.dumps(claims))
    result = run_cli(done, "ceremony", "sign-trust-list", "ceremony.toml", "elsewhere.json",
                     "--out", "x.jws")  # fmt: skip
    assert result.returncode == 1 and "(issuer)" in result.stderr
    (done / "junk.json").write_text('{"seq": "one"}')
    result = run_cli(done, "ceremony", "sign-trust-list", "ceremony.toml", "junk.json",
                     "--out", "x.jws")  # fmt: skip
    assert result.returncode == 1 and "(decode)" in result.stderr
    assert "Traceback" not in result.stderr
    # A ceremony file whose root store is not the root the outputs pinned.
    other = done / "other"
    other.mkdir()
    ceremony_dir(other)
    assert run_cli(other, "ceremony", "run", "ceremony.toml").returncode == 0
    mixed = ceremony_toml(root_dir="other/root-store")
    ceremony_dir(done, mixed, name="mixed.toml")
    result = run_cli(done, "ceremony", "sign-trust-list", "mixed.toml", str(unsigned),
                     "--out", "x.jws")  # fmt: skip
    assert result.returncode == 1 and "is not the pinned" in result.stderr
    ceremony_dir(done, ceremony_toml(root_dir="nowhere"), name="nowhere.toml")
    result = run_cli(done, "ceremony", "sign-trust-list", "nowhere.toml", str(unsigned),
                     "--out", "x.jws")  # fmt: skip
    assert result.returncode == 1 and "holds no root" in result.stderr
    assert not (done / "x.jws").exists()


def test_an_issuer_in_offline_mode_refuses_to_start_without_an_installed_list(
    done: Path,
) -> None:
    assert issuer(done, "db", "upgrade")[0] == 0
    code, _, err = issuer(done, "serve", "--port", "1")
    assert code == 1 and "no trust list installed" in err and "import-trust-list" in err
    code, _, err = issuer(done, "keys", "init")
    assert code == 0  # the ceremony's store is complete: nothing to make
