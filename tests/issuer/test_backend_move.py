"""Moving from the file store to another backend (an HSM: SoftHSM2 here) with no gap.

The issuer is restarted on a :class:`StackedBackend` (the new backend in front of the
file store) and every purpose gets a new key there. A verifier that refreshes the trust
list once per cache TTL accepts every token minted before, during and after the move,
through the file keys' retirement, with the root online or offline; one that refreshes
less often than that is caught out, which shows the test can fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cardsvc.core.errors import VerificationError
from cardsvc.core.jws import verify_jws
from cardsvc.core.keys import ISSUING_PURPOSES, KeyPurpose
from cardsvc.core.qrtoken import Purpose, QrToken, encode_qr_token, verify_qr_token
from cardsvc.core.signing import sign_jws
from cardsvc.core.trustlist import TrustAnchor
from cardsvc.keystore import ceremony
from cardsvc.keystore.backend import KeyBackend
from cardsvc.keystore.ceremony_config import load_config
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.keystore.offline import OfflineRoot
from cardsvc.keystore.open import Pkcs11Config, open_backend
from cardsvc.keystore.service import KeyPolicy, KeyService
from cardsvc.keystore.stacked import StackedBackend
from cardsvc.services import TrustListPublisher
from tests.issuer.ceremony_helpers import ISSUER, ceremony_dir
from tests.softhsm import Token

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)
STEP = timedelta(seconds=30)
POLICY = KeyPolicy(cache_ttl=TTL)
LEEWAY = timedelta(seconds=5)
FILE_PASS = b"file store passphrase"


@pytest.fixture(params=["files", pytest.param("softhsm", marks=pytest.mark.softhsm)])
def new_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], KeyBackend]]:
    """Opens the backend being moved to: another file store, or a SoftHSM2 token."""
    opened: list[KeyBackend] = []
    if request.param == "files":

        def open_new() -> KeyBackend:
            return FileKeyBackend(tmp_path / "new-keys", b"another passphrase")
    else:
        token: Token = request.getfixturevalue("hsm_token")

        def open_new() -> KeyBackend:
            backend = open_backend(
                Pkcs11Config(module=token.hsm.module, token_label=token.label, pin=token.pin)
            )
            opened.append(backend)
            return backend

    yield open_new
    for backend in opened:
        backend.close()  # type: ignore[attr-defined]


@dataclass
class Verifier:
    """A partner's verifier: pins the root, refreshes the trust list every ``every``."""

    anchor: TrustAnchor
    every: timedelta
    fetched_at: datetime | None = None
    refused: list[str] = field(default_factory=list)

    def tick(self, now: datetime, fetch: Callable[[datetime], str]) -> None:
        if self.fetched_at is None or now - self.fetched_at >= self.every:
            self.anchor.accept(fetch(now), now=now, leeway=LEEWAY)
            self.fetched_at = now

    def check(self, now: datetime, purpose: KeyPurpose, token: str) -> None:
        trust_list = self.anchor.current
        assert trust_list is not None
        try:
            if purpose is KeyPurpose.ECARD:
                verify_qr_token(token, trust_list=trust_list, now=now, leeway=LEEWAY)
            else:
                verify_jws(
                    token,
                    typ="move-test+jwt",
                    key_for=lambda h: trust_list.find(str(h.get("kid")), purpose, now=now).key,
                )
        except VerificationError as exc:
            self.refused.append(f"{now:%H:%M:%S} {purpose.value}: {exc}")


def mint(keys: KeyService, purpose: KeyPurpose, now: datetime) -> tuple[str, str]:
    signer = keys.signer(purpose, now=now)
    if purpose is KeyPurpose.ECARD:
        qr = QrToken(
            issuer=ISSUER, purpose=Purpose.TRANSPORT, ecard_ref=b"\x01" * 8,
            jti=secrets.token_bytes(8), issued_at=now, expires_at=now + timedelta(seconds=60),
            status_shard=0, status_idx=7, attributes={},
        )  # fmt: skip
        return signer.kid, encode_qr_token(qr, signer)
    return signer.kid, sign_jws({"typ": "move-test+jwt"}, {"iat": int(now.timestamp())}, signer)


@dataclass
class Issuer:
    """The issuer as it is restarted: its key service and how verifiers fetch its list."""

    keys: KeyService
    fetch: Callable[[datetime], str]


def file_issuer(tmp_path: Path, *, offline: bool) -> tuple[Issuer, Callable[[KeyBackend], Issuer]]:
    """The issuer on the file store (root online, or offline from a ceremony), and how to
    restart it stacked on a new backend."""
    if offline:
        os.environ["ISSUER_PASS"] = FILE_PASS.decode()
        try:
            config = load_config(ceremony_dir(tmp_path))
            ceremony.run(config, now=T0)
        finally:
            del os.environ["ISSUER_PASS"]
        files = tmp_path / "issuer-keys"
        root = OfflineRoot(tmp_path / "out" / "root.jwk", tmp_path / "installed.jws")
    else:
        files = tmp_path / "keys"
        root = None

    def make(backend: KeyBackend) -> Issuer:
        keys = KeyService(backend, POLICY, issuer=ISSUER, offline_root=root)
        publisher = TrustListPublisher(keys)
        return Issuer(keys=keys, fetch=lambda now: publisher.current(now=now).body)

    first = make(FileKeyBackend(files, FILE_PASS))
    if offline:
        token = config.outputs.trust_list.read_text().strip()
        first.keys.import_trust_list(token, now=T0, leeway=LEEWAY)
    else:
        first.keys.init(now=T0)
    return first, lambda new: make(StackedBackend(new, FileKeyBackend(files, FILE_PASS)))


@pytest.mark.parametrize("offline", [False, True], ids=["root-online", "root-offline"])
def test_verifiers_see_no_gap_across_the_move(
    tmp_path: Path, new_backend: Callable[[], KeyBackend], offline: bool
) -> None:
    issuer, restart_on = file_issuer(tmp_path, offline=offline)
    file_kids = {r.purpose: r.kid for r in issuer.keys.records()}
    root = issuer.keys.root_key()
    on_schedule = Verifier(TrustAnchor(root), every=TTL)
    too_rarely = Verifier(TrustAnchor(root), every=2 * TTL)
    moved_at = T0 + 2 * TTL + STEP  # just after the verifiers' refresh
    unsigned = None
    imported_at = moved_at + timedelta(minutes=31)  # the trip to the offline root and back
    end = T0 + timedelta(days=2)
    used: dict[KeyPurpose, list[str]] = {p: [] for p in ISSUING_PURPOSES}
    previous: list[tuple[datetime, KeyPurpose, str]] = []

    now = T0
    while now <= end:
        if now == moved_at:
            issuer = restart_on(new_backend())
            backend = issuer.keys.backend
            assert isinstance(backend, StackedBackend)
            assert sorted(backend.still_previous()) == sorted(ISSUING_PURPOSES)
            if offline:
                unsigned = issuer.keys.prepare_trust_list(now=now, rotate=backend.still_previous())
            else:
                for purpose in backend.still_previous():
                    issuer.keys.rotate(purpose, now=now)
            assert backend.still_previous() == []
        if offline and now == imported_at:
            assert unsigned is not None
            config = load_config(tmp_path / "ceremony.toml")
            out = tmp_path / "move.jws"
            _, token = ceremony.sign_trust_list(
                config, ceremony.unsigned_bytes(unsigned), out, now=now - timedelta(minutes=10)
            )
            issuer.keys.import_trust_list(token, now=now, leeway=LEEWAY)
        for verifier in (on_schedule, too_rarely):
            verifier.tick(now, issuer.fetch)
        # Tokens of the previous step, checked again now while they live (a QR token: a
        # minute), so a token signed just before a switch is checked just after it.
        for minted_at, purpose, token in previous:
            if now - minted_at < timedelta(seconds=60):
                on_schedule.check(now, purpose, token)
        previous = []
        for purpose in ISSUING_PURPOSES:
            kid, token = mint(issuer.keys, purpose, now)
            if not used[purpose] or used[purpose][-1] != kid:
                used[purpose].append(kid)
            for verifier in (on_schedule, too_rarely):
                verifier.check(now, purpose, token)
            previous.append((now, purpose, token))
        now += STEP if now < T0 + timedelta(hours=2) else timedelta(hours=1)

    assert on_schedule.refused == []
    assert too_rarely.refused, "a verifier refreshing less often than the TTL must fail"
    assert all("is not in the trust list" in r for r in too_rarely.refused)

    records = {r.kid: r for r in issuer.keys.records()}
    activation = (imported_at if offline else moved_at) + TTL
    stacked = issuer.keys.backend
    assert isinstance(stacked, StackedBackend)
    new_backend_kids = {r.kid for r in stacked.current.records()}
    for purpose in ISSUING_PURPOSES:
        old, new = used[purpose]  # the file key, then the new backend's: nothing else
        assert old == file_kids[purpose] and new in new_backend_kids
        retired = records[old]
        assert retired.retires_at == activation
        assert retired.verify_until == activation + POLICY.lifetime(purpose) + TTL
        assert records[new].activates_at == activation
    # Two days on: the short-lived purposes' file keys have left the next trust list; the
    # card-document and audit keys stay verifiable for decades.
    if offline:
        # Every file key has retired and the root is not in the file store: its private
        # files can go; the file store is only read for its public records from now on.
        for pem in (tmp_path / "issuer-keys" / "private").iterdir():
            pem.unlink()
        listed_now = issuer.keys.prepare_trust_list(now=end, rotate=[KeyPurpose.ECARD]).keys
    else:
        listed_now = issuer.keys.trusted_keys(now=end)
    listed = {k.key.kid for k in listed_now}
    assert file_kids[KeyPurpose.ECARD] not in listed
    assert file_kids[KeyPurpose.ACCESS_TOKEN] not in listed
    assert file_kids[KeyPurpose.CARD_DOCUMENT] in listed


# -- through the command ----------------------------------------------------------------


@pytest.mark.softhsm
def test_move_to_backend_through_the_cli(hsm_token: Token, tmp_path: Path) -> None:
    from tests.issuer.ceremony_helpers import run_cli

    files = {
        "CARDSVC_KEY_DIR": str(tmp_path / "keys"),
        "CARDSVC_KEY_PASSPHRASE": FILE_PASS.decode(),
        "CARDSVC_ISSUER": ISSUER,
        "CARDSVC_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    for step in (("db", "upgrade"), ("keys", "init")):
        assert run_cli(tmp_path, *step, env=files).returncode == 0
    before = run_cli(tmp_path, "keys", "list", env=files).stdout

    not_stacked = run_cli(tmp_path, "keys", "move-to-backend", env=files)
    assert not_stacked.returncode == 1 and "CARDSVC_PREVIOUS_KEY_DIR" in not_stacked.stderr

    hsm = {
        **files,
        "CARDSVC_KEY_BACKEND": "pkcs11",
        "CARDSVC_PKCS11_MODULE": str(hsm_token.hsm.module),
        "CARDSVC_PKCS11_TOKEN_LABEL": hsm_token.label,
        "CARDSVC_PKCS11_PIN_FILE": str(hsm_token.pin_file(tmp_path)),
        "CARDSVC_PREVIOUS_KEY_DIR": str(tmp_path / "keys"),
    }
    moved = run_cli(tmp_path, "keys", "move-to-backend", env=hsm)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.count("new key") == len(ISSUING_PURPOSES)
    again = run_cli(tmp_path, "keys", "move-to-backend", env=hsm)
    assert again.returncode == 0 and "already signs on the new backend" in again.stdout

    listing = run_cli(tmp_path, "keys", "list", env=hsm).stdout.splitlines()
    assert len(listing) == len(before.splitlines()) + len(ISSUING_PURPOSES)
    # The file keys retire one cache TTL from now; the new ones are on the token.
    token = open_backend(
        Pkcs11Config(module=hsm_token.hsm.module, token_label=hsm_token.label, pin=hsm_token.pin)
    )
    token_kids = {r.kid for r in token.records()}
    token.close()  # type: ignore[attr-defined]
    assert len(token_kids) == len(ISSUING_PURPOSES)
    for line in listing:
        kid = line.split()[1]
        if kid in token_kids:
            assert "retires -" in line
        elif not line.startswith("root"):
            assert "retires -" not in line, line
    # The root stays where it was (online here) and signs a list of both generations.
    exported = run_cli(tmp_path, "keys", "export-trust-list", env=hsm)
    assert exported.returncode == 0, exported.stderr
    audit = run_cli(tmp_path, "audit", "verify", env=hsm)
    assert audit.returncode == 0, audit.stderr + audit.stdout


@pytest.mark.softhsm
def test_move_to_backend_with_the_root_offline_through_the_cli(
    hsm_token: Token, tmp_path: Path
) -> None:
    from tests.issuer.ceremony_helpers import issuer_env, run_cli

    ceremony_dir(tmp_path)
    assert run_cli(tmp_path, "ceremony", "run", "ceremony.toml").returncode == 0
    files = issuer_env(tmp_path)
    for step in (("db", "upgrade"), ("keys", "import-trust-list", "out/trust-list.jws")):
        done = run_cli(tmp_path, *step, env=files)
        assert done.returncode == 0, done.stderr
    hsm = {
        **files,
        "CARDSVC_KEY_BACKEND": "pkcs11",
        "CARDSVC_PKCS11_MODULE": str(hsm_token.hsm.module),
        "CARDSVC_PKCS11_TOKEN_LABEL": hsm_token.label,
        "CARDSVC_PKCS11_PIN_FILE": str(hsm_token.pin_file(tmp_path)),
        "CARDSVC_PREVIOUS_KEY_DIR": files["CARDSVC_KEY_DIR"],
    }
    no_out = run_cli(tmp_path, "keys", "move-to-backend", env=hsm)
    assert no_out.returncode == 1 and "--out" in no_out.stderr
    prepared = run_cli(tmp_path, "keys", "move-to-backend", "--out", "move.json", env=hsm)
    assert prepared.returncode == 0, prepared.stderr
    signed = run_cli(tmp_path, "ceremony", "sign-trust-list", "ceremony.toml", "move.json",
                     "--out", "move.jws")  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    imported = run_cli(tmp_path, "keys", "import-trust-list", "move.jws", env=hsm)
    assert imported.returncode == 0, imported.stderr
    listing = run_cli(tmp_path, "keys", "list", env=hsm).stdout.splitlines()
    assert "trust list sequence 1 installed" in listing[0]
    keys = listing[1:]
    assert len(keys) == 2 * len(ISSUING_PURPOSES)
    assert sum("retires -" in line for line in keys) == len(ISSUING_PURPOSES)
    again = run_cli(tmp_path, "keys", "move-to-backend", "--out", "again.json", env=hsm)
    assert again.returncode == 0 and "already signs on the new backend" in again.stdout
