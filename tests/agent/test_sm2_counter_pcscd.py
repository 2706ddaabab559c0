"""The counter with SM2 everywhere, through pcscd: tests/agent/test_counter_clerk_pcscd.py
again, every issuer key SM2SM3 and the card's chip key an SM2 key (GENERATE KEY P1 01).

So the genuine-card check verifies the chip's SM2 INTERNAL AUTHENTICATE answer, a benefit
collection carries an SM2 card signature over the transaction that the issuer verifies,
and an e-card is activated at the counter with the chip's SM2 answer to the issuer's nonce.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardsvc.core.keys import b64url_decode
from cardsvc.core.sm2 import SM2SM3
from cardsvc.services import utcnow
from tests.agent import test_counter_clerk_pcscd as _base

globals().update(
    {k: v for k, v in vars(_base).items() if k.startswith("test_") or k == "pytestmark"}
)


@pytest.fixture
def counter(tmp_path: Path, pcscd: object) -> Iterator[_base.Counter]:
    with _base.running_counter(tmp_path, alg=SM2SM3) as world:
        card = world.services.cards.get(world.card_number, now=utcnow())
        assert card.chip_jwk is not None and card.document is not None
        assert json.loads(card.chip_jwk)["crv"] == "SM2"  # the chip's key: SM2
        header = json.loads(b64url_decode(card.document.split(".")[0]))
        assert header["alg"] == SM2SM3  # the card document: signed with SM2
        yield world
