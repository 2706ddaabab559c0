"""A ceremony file on file stores in a temporary directory, and the CLI as a process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cardsvc.core.keys import ISSUING_PURPOSES

CARDSVC = shutil.which("cardsvc", path=str(Path(sys.executable).parent)) or "cardsvc"
ISSUER = "https://issuer.test"


def ceremony_toml(
    *,
    root_dir: str = "root-store",
    issuer_dir: str = "issuer-keys",
    out: str = "out",
    issuer: str = ISSUER,
    purposes: tuple[str, ...] | None = None,
    labels: dict[str, str] | None = None,
    extra_top: str = "",
    extra_key: str = "",
) -> str:
    purposes = purposes if purposes is not None else tuple(p.value for p in ISSUING_PURPOSES)
    labels = labels or {}
    keys = "".join(
        f'[[issuing.keys]]\npurpose = "{p}"\nlabel = "{labels.get(p, p + " 2026")}"\n'
        f'key-type = "ecdsa-p256"\n{extra_key if i == 0 else ""}\n'
        for i, p in enumerate(purposes)
    )
    return f"""# reviewed by two officers
ceremony = "test ceremony"
issuer = "{issuer}"
trust-list-lifetime-hours = 168
{extra_top}
[root]
label = "root 2026"
key-type = "ecdsa-p256"

[root.store]
backend = "file"
directory = "{root_dir}"
passphrase-file = "root.pass"

[issuing.store]
backend = "file"
directory = "{issuer_dir}"
passphrase-env = "ISSUER_PASS"

{keys}
[outputs]
root-jwk = "{out}/root.jwk"
trust-list = "{out}/trust-list.jws"
jwks = "{out}/jwks.json"
transcript = "{out}/transcript.json"
"""


def ceremony_dir(tmp_path: Path, text: str | None = None, name: str = "ceremony.toml") -> Path:
    (tmp_path / "root.pass").write_text("root store passphrase\n")
    path = tmp_path / name
    path.write_text(ceremony_toml() if text is None else text)
    return path


def issuer_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The online issuer after the ceremony: offline root, the ceremony's issuer store."""
    return {
        "CARDSVC_KEY_DIR": str(tmp_path / "issuer-keys"),
        "CARDSVC_OFFLINE_ROOT": "true",
        "CARDSVC_ROOT_KEY_FILE": str(tmp_path / "out" / "root.jwk"),
        "CARDSVC_KEY_PASSPHRASE": "issuer store passphrase",
        "CARDSVC_ISSUER": ISSUER,
        "CARDSVC_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        **extra,
    }


def run_cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CARDSVC_")}
    full["ISSUER_PASS"] = "issuer store passphrase"
    full.update(env or {})
    return subprocess.run(
        [CARDSVC, *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
