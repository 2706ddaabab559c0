"""The ceremony file: every fault is refused by name before any key is made."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cardsvc.core.keys import ISSUING_PURPOSES, KeyPurpose
from cardsvc.errors import CeremonyConfigError
from cardsvc.keystore.ceremony_config import (
    CeremonyConfig,
    FileStoreSpec,
    parse_config,
)
from tests.issuer.ceremony_helpers import ceremony_toml

SOURCE = Path("/ceremony/ceremony.toml")


def parse(text: str) -> CeremonyConfig:
    return parse_config(SOURCE, text.encode())


def refusal(text: str) -> CeremonyConfigError:
    with pytest.raises(CeremonyConfigError) as info:
        parse(text)
    return info.value


def test_a_complete_file_parses_into_frozen_typed_config() -> None:
    config = parse(ceremony_toml())
    assert config.issuer == "https://issuer.test"
    assert [k.purpose for k in config.keys] == list(ISSUING_PURPOSES)
    assert config.root.purpose is KeyPurpose.ROOT and config.root.label == "root 2026"
    assert isinstance(config.root_store, FileStoreSpec)
    # Relative paths are the ceremony file's directory's.
    assert config.root_store.directory == Path("/ceremony/root-store")
    assert config.root_store.passphrase_file == Path("/ceremony/root.pass")
    assert config.outputs.transcript == Path("/ceremony/out/transcript.json")
    assert len(config.sha256) == 64
    with pytest.raises(AttributeError):
        config.issuer = "https://other.test"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (ceremony_toml(extra_top='colour = "blue"\n'), "colour"),
        (ceremony_toml(extra_key='extractable = true\n'), "issuing.keys[0].extractable"),
        (ceremony_toml().replace('backend = "file"\n', 'backend = "file"\nslot = 0\n', 1),
         "root.store.slot"),
        (ceremony_toml().replace("[outputs]\n", "[outputs]\ncertificate = \"x.pem\"\n"),
         "outputs.certificate"),
    ],
)  # fmt: skip
def test_an_unknown_field_is_refused_by_its_path(text: str, where: str) -> None:
    error = refusal(text)
    assert error.where == where and error.reason == "unknown field"


def test_a_missing_purpose_is_refused() -> None:
    purposes = tuple(p.value for p in ISSUING_PURPOSES if p is not KeyPurpose.STATUS_LIST)
    error = refusal(ceremony_toml(purposes=purposes))
    assert error.where == "issuing.keys" and "status-list" in error.reason


def test_a_key_without_a_purpose_is_refused() -> None:
    text = ceremony_toml().replace('purpose = "ecard"\n', "", 1)
    error = refusal(text)
    assert error.where == "issuing.keys[1].purpose" and error.reason == "is missing"


def test_a_purpose_twice_is_refused() -> None:
    purposes = (*(p.value for p in ISSUING_PURPOSES), "ecard")
    error = refusal(ceremony_toml(purposes=purposes, labels={"ecard": "ecard"}))
    # The second ecard entry has the default label of the first one's, so the purpose
    # check (which comes first) is what names it.
    assert error.where == f"issuing.keys[{len(ISSUING_PURPOSES)}].purpose"
    assert "already issuing.keys[1]" in error.reason


def test_a_duplicate_label_is_refused() -> None:
    error = refusal(ceremony_toml(labels={"status-list": "ecard 2026"}))
    assert error.where == "issuing.keys[2].label"
    assert "already issuing.keys[1].label" in error.reason


def test_a_label_shared_with_the_root_is_refused() -> None:
    error = refusal(ceremony_toml(labels={"ecard": "root 2026"}))
    assert error.where == "issuing.keys[1].label" and "root.label" in error.reason


def test_the_root_on_the_issuers_store_is_refused() -> None:
    error = refusal(ceremony_toml(root_dir="issuer-keys"))
    assert error.where == "root.store" and "own token" in error.reason


def test_a_root_purpose_among_the_issuing_keys_is_refused() -> None:
    error = refusal(ceremony_toml(purposes=(*(p.value for p in ISSUING_PURPOSES), "root")))
    assert "the root is [root]" in error.reason


@pytest.mark.parametrize("field", ["pin", "passphrase"])
def test_a_secret_in_the_file_is_refused_and_the_way_named(field: str) -> None:
    text = ceremony_toml().replace(
        'passphrase-file = "root.pass"\n', f'{field} = "123456"\n', 1
    )
    error = refusal(text)
    assert error.where == f"root.store.{field}" and f"{field}-file" in error.reason


def test_both_or_neither_secret_source_is_refused() -> None:
    both = ceremony_toml().replace(
        'passphrase-file = "root.pass"\n', 'passphrase-file = "a"\npassphrase-env = "B"\n', 1
    )
    assert "exactly one" in refusal(both).reason
    neither = ceremony_toml().replace('passphrase-file = "root.pass"\n', "", 1)
    assert "exactly one" in refusal(neither).reason


def test_other_key_types_and_backends_and_outputs_on_one_path_are_refused() -> None:
    assert "ecdsa-p256" in refusal(ceremony_toml().replace('"ecdsa-p256"', '"rsa-2048"', 1)).reason
    assert refusal(ceremony_toml().replace('"file"', '"cloud"', 1)).where == "root.store.backend"
    text = ceremony_toml().replace('jwks = "out/jwks.json"', 'jwks = "out/root.jwk"')
    assert refusal(text).where == "outputs"


def test_a_pkcs11_store_parses_without_touching_a_token() -> None:
    text = ceremony_toml().replace(
        'backend = "file"\ndirectory = "root-store"\npassphrase-file = "root.pass"\n',
        'backend = "pkcs11"\nmodule = "/usr/lib/softhsm/libsofthsm2.so"\n'
        'token-label = "cardsvc-root"\npin-env = "ROOT_PIN"\n',
        1,
    )
    config = parse(text)
    assert config.root_store.describe().startswith("PKCS#11 token 'cardsvc-root'")


def test_not_toml_and_not_utf8_are_refused() -> None:
    assert "not TOML" in refusal("ceremony = [").reason
    with pytest.raises(CeremonyConfigError) as info:
        parse_config(SOURCE, b"\xff\xfe")
    assert "UTF-8" in info.value.reason


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_arbitrary_bytes_get_a_typed_refusal(data: bytes) -> None:
    with contextlib.suppress(CeremonyConfigError):
        parse_config(SOURCE, data)


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=st.sampled_from(["", "[root]", "[root.store]", "[issuing.store]", "[outputs]"]),
    name=st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
    value=st.sampled_from(['"x"', "1", "true", "[1, 2]", "{ a = 1 }"]),
)
def test_any_field_added_to_a_valid_file_is_refused_by_name(
    table: str, name: str, value: str
) -> None:
    base = ceremony_toml()
    if table:
        text = base.replace(f"{table}\n", f"{table}\n{name} = {value}\n", 1)
    else:
        text = f"{name} = {value}\n{base}"
    # Unknown, or a second value for a field the file sets (TOML refuses), or a second
    # secret source: never accepted, never another exception.
    error = refusal(text)
    assert error.where


def test_the_documented_example_parses() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "ceremony.example.toml"
    config = parse_config(example, example.read_bytes())
    assert [k.purpose for k in config.keys] == list(ISSUING_PURPOSES)
    assert config.root_store.describe() == (
        "PKCS#11 token 'cardsvc-root' (/usr/lib/softhsm/libsofthsm2.so)"
    )
