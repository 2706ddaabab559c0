"""SoftHSM2 for the PKCS#11 key store's tests: one token directory per test run, one
fresh token per test.

SoftHSM reads ``SOFTHSM2_CONF`` when its module is initialised, once per process, so the
run's configuration (its own ``directories.tokendir`` in a temporary directory) is set
before anything loads the module. Each test then initialises a token of its own with
``softhsm2-util --init-token --free`` under a unique label; the key store reinitialises the
module once when a label is not found, which is how SoftHSM sees a token made after it
started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the root conftest imports this; core's tests need no issuer packages
    from cardsvc.settings import Settings

#: Where Debian's softhsm2 package puts the module.
MODULE_CANDIDATES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
)


def find_module() -> Path | None:
    return next((path for path in MODULE_CANDIDATES if path.is_file()), None)


@dataclass(frozen=True)
class SoftHsm:
    """The run's SoftHSM: its module, configuration file and token directory."""

    module: Path
    conf: Path
    token_dir: Path

    def new_token(self, *, pin: str = "123456", so_pin: str = "12345678") -> Token:
        label = f"t-{secrets.token_hex(6)}"
        before = set(self.token_dir.iterdir())
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label,
             "--pin", pin, "--so-pin", so_pin],
            check=True, capture_output=True, env={**os.environ, "SOFTHSM2_CONF": str(self.conf)},
        )  # fmt: skip
        (directory,) = set(self.token_dir.iterdir()) - before
        return Token(hsm=self, label=label, pin=pin, so_pin=so_pin, directory=directory)


@dataclass(frozen=True)
class Token:
    """One initialised token; ``directory`` is its own folder under the token directory
    (renaming it away takes the token out of SoftHSM, as pulling an HSM's cable would)."""

    hsm: SoftHsm
    label: str
    pin: str
    so_pin: str
    directory: Path

    @property
    def away(self) -> Path:
        # Out of the token directory: SoftHSM takes every folder in it for a token.
        return self.hsm.token_dir.parent / f"{self.directory.name}.away"

    def remove(self) -> None:
        self.directory.rename(self.away)

    def restore(self) -> None:
        self.away.rename(self.directory)

    def pin_file(self, folder: Path, pin: str | None = None) -> Path:
        path = folder / f"{self.label}.pin"
        path.write_text((self.pin if pin is None else pin) + "\n")
        path.chmod(0o600)
        return path

    def settings(self, base: Settings, folder: Path, **update: object) -> Settings:
        """``base`` switched to this token (PIN from a file in ``folder``)."""
        return base.model_copy(
            update={
                "key_backend": "pkcs11",
                "pkcs11_module": self.hsm.module,
                "pkcs11_token_label": self.label,
                "pkcs11_pin_file": self.pin_file(folder),
                "key_passphrase": None,
                "pkcs11_reopen_interval_seconds": 0.0,
                "pkcs11_retry_after_seconds": 2,
                **update,
            }
        )


def start(folder: Path) -> SoftHsm | str:
    """Set up the run's SoftHSM in ``folder``, or say why it cannot be."""
    module = find_module()
    if module is None or shutil.which("softhsm2-util") is None:
        return "SoftHSM2 is not installed (Debian package softhsm2; ./dev installs it)"
    token_dir = folder / "tokens"
    token_dir.mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {token_dir}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return SoftHsm(module=module, conf=conf, token_dir=token_dir)


#: Where p11-kit's pkcs11.h is (Debian libp11-kit-dev), for the fault-injecting shim.
PKCS11_INCLUDE = Path("/usr/include/p11-kit-1")
SHIM_SOURCE = Path(__file__).with_name("p11shim.c")


@dataclass(frozen=True)
class FaultyModule:
    """tests/p11shim.c built: a module forwarding to a copy of SoftHSM's that fails on
    demand (``fail(code)``, ``fail(code, times=n)``, ``heal()``)."""

    module: Path
    faults: Path

    def fail(self, code: int, *, times: int | None = None) -> None:
        self.faults.write_text(f"{code:x}" + ("" if times is None else f" {times}") + "\n")

    def heal(self) -> None:
        self.faults.unlink(missing_ok=True)


def build_shim(hsm: SoftHsm, folder: Path) -> FaultyModule | str:
    """Compile the shim in ``folder`` (gcc, p11-kit's header), or say why it cannot be."""
    if shutil.which("gcc") is None or not (PKCS11_INCLUDE / "p11-kit" / "pkcs11.h").is_file():
        return "gcc and p11-kit's pkcs11.h (Debian gcc, libp11-kit-dev; ./dev installs them)"
    shim = folder / "libp11shim.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-Wall", f"-I{PKCS11_INCLUDE}",
         "-o", str(shim), str(SHIM_SOURCE), "-ldl"],
        check=True, capture_output=True,
    )  # fmt: skip
    # A copy of its own: SoftHSM keeps one state per loaded library, and this process's
    # other tests use the original.
    copy = folder / "libsofthsm2-copy.so"
    shutil.copyfile(hsm.module, copy)
    faults = folder / "faults"
    os.environ["CARDSVC_P11SHIM_MODULE"] = str(copy)
    os.environ["CARDSVC_P11SHIM_FAULTS"] = str(faults)
    return FaultyModule(module=shim, faults=faults)
