"""The issuer on SM2 with one setting: the tests of every signed format, run again.

``signing_algorithm="SM2SM3"`` makes every key of the store (the root too) an SM2 key, so
the modules star-imported here sign and verify card documents, QR tokens, device-bound
codes, status lists, bundles and patches, audit checkpoints, receipts and terminal
certificates with SM2SM3. Left out: the QR version 10 budget, which SM2's longer COSE
``alg`` misses for the longest purposes (bench/bench_sm2.py reports every version).
"""

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
        signing_algorithm="SM2SM3",
    )
