"""What partners import: one screen, three dependencies, and the README example runs."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import cardsvc.core

ROOT = Path(__file__).resolve().parents[2]


def test_public_surface_fits_on_a_screen() -> None:
    assert len(cardsvc.core.__all__) <= 30
    for name in cardsvc.core.__all__:
        assert getattr(cardsvc.core, name).__doc__, f"{name} has no docstring"


def test_core_imports_nothing_but_its_three_dependencies() -> None:
    forbidden = ["fastapi", "starlette", "sqlalchemy", "pydantic", "redis", "typer", "alembic"]
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {forbidden!r}:\n"
        "            raise ImportError('cardsvc.core must not import ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import cardsvc.core\n"
        "from cardsvc.core import verify_qr_token, verify_card_document, TrustAnchor\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_readme_example_runs_and_prints_what_it_says() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- example: verify -->\n```python\n(.*?)```", readme, re.S)
    assert match, "README lost its verification example"
    out = io.StringIO()
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(match.group(1), "README.md", "exec"), {})  # noqa: S102
    finally:
        os.chdir(cwd)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "TRANSPORT {'CONCESSION': 1, 'CONCESSION_UNTIL': datetime.date(2030, 6, 30)}"
    )
    assert lines[1].startswith("purpose - purpose: token is for transport")
