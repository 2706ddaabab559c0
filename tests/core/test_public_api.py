"""What partners import: one screen, three dependencies, and the README example runs."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import re
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import cardsvc.core

ROOT = Path(__file__).resolve().parents[2]


def test_public_surface_fits_on_a_screen() -> None:
    assert len(cardsvc.core.__all__) <= 45
    for name in cardsvc.core.__all__:
        assert getattr(cardsvc.core, name).__doc__, f"{name} has no docstring"


def test_star_import_gives_exactly_the_public_names_each_made_in_core() -> None:
    names = cardsvc.core.__all__
    assert names == sorted(set(names), key=lambda n: (n[0].islower(), n)), "keep it sorted"
    namespace: dict[str, object] = {}
    exec("from cardsvc.core import *", namespace)  # noqa: S102
    del namespace["__builtins__"]
    assert sorted(namespace) == sorted(names)
    for name, value in namespace.items():
        assert getattr(value, "__module__", "").startswith("cardsvc.core."), name


def _core_types_in(annotation: object) -> Iterator[type]:
    if inspect.isclass(annotation) and annotation.__module__.startswith("cardsvc.core."):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _core_types_in(argument)


def _signatures(value: object) -> Iterator[tuple[str, object]]:
    """(where, callable or dataclass) for a public name, its public methods and properties."""
    if not inspect.isclass(value):
        yield "", value
        return
    if dataclasses.is_dataclass(value):
        yield " fields", value
    for name, member in inspect.getmembers(value):
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(member, property) and member.fget is not None:
            yield f".{name}", member.fget
        elif inspect.isfunction(member) or inspect.ismethod(member):
            yield f".{name}", member


def test_every_core_type_a_public_signature_mentions_is_public() -> None:
    """What a caller gets back or passes in (a Verdict's Outcome, the Bundle that
    ``OfflineVerifier.update`` returns, what ``verify_device_bound`` returns) is importable
    from ``cardsvc.core`` itself."""
    missing = set()
    for name in cardsvc.core.__all__:
        for where, typed in _signatures(getattr(cardsvc.core, name)):
            for hint in typing.get_type_hints(typed).values():
                for found in _core_types_in(hint):
                    if found.__name__ not in cardsvc.core.__all__:
                        missing.add(f"{found.__module__}.{found.__name__} (in {name}{where})")
    assert not missing


def test_names_the_readme_shows_partners_are_public() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Verifying, as a partner (`cardsvc.core`)", 1)[1]
    section = section.split("\n## ", 1)[0]
    imported = {
        name.strip()
        for groups in re.findall(r"^from cardsvc\.core import (?:\(([^)]*)\)|(.*))", section, re.M)
        for name in "".join(groups).split(",")
        if name.strip()
    }
    table = section.split("The public surface (`from cardsvc.core import ...`):", 1)[1]
    table = table.split("\n\n", 2)[1]  # the table itself, after its blank line
    shown = set(re.findall(r"`([A-Z]\w*|verify_\w+)[(.`]", table))
    assert {"TrustAnchor", "verify_qr_token"} <= imported
    assert {"OfflineVerifier", "DeviceBoundToken", "VerificationError"} <= shown
    assert (imported | shown) - set(cardsvc.core.__all__) == set()


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
