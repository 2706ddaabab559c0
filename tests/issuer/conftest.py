"""Issuer fixtures: settings on a temporary key store and database."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardsvc.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        key_dir=tmp_path / "keys",
        key_passphrase="test passphrase",  # type: ignore[arg-type]
        issuer="https://issuer.test",
    )
