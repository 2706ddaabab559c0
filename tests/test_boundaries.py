"""The import contracts in pyproject.toml (checked by `lint-imports` in ./dev test) name
each part of cardsvc the counter agent must not import, since import-linter cannot say
"all of cardsvc but core": a new cardsvc module must be added there."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path
from typing import Any

import cardsvc

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def contract(contract_id: str) -> dict[str, Any]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    (found,) = (c for c in config["contracts"] if c["id"] == contract_id)
    return found


def test_the_agent_contract_forbids_every_part_of_cardsvc_but_core() -> None:
    parts = {f"cardsvc.{m.name}" for m in pkgutil.iter_modules(cardsvc.__path__)}
    assert "cardsvc.registry" in parts  # the listing sees the issuer's packages
    forbidden = set(contract("agent-uses-core-only")["forbidden_modules"])
    assert forbidden == parts - {"cardsvc.core"}
