"""What two issuer processes share without talking to each other (cardsvc.multiprocess).

Two :class:`Services` built from the same settings have nothing in memory in common,
as two worker processes: they must still agree on the trust list they serve and on the
secret that seals e-card nonces.
"""

from __future__ import annotations

from datetime import timedelta

from cardsvc.core.keys import KeyPurpose
from cardsvc.ecards.proofs import new_nonce
from cardsvc.services import SHARED_TRUST_LIST, Services
from tests.issuer.registry_helpers import services  # noqa: F401 - a fixture


def _other(first: Services) -> Services:
    return Services.from_settings(first.settings)


def test_a_nonce_sealed_by_one_process_opens_at_another(services: Services) -> None:  # noqa: F811
    other = _other(services)
    now = services.clock()
    nonce = new_nonce(services.ecard_tokens.sealer, now=now)
    opened = other.ecard_tokens.sealer.open(b"nonce", nonce, now=now, max_age=timedelta(minutes=1))
    assert len(opened) == 8
    other.engine.dispose()


def test_two_processes_serve_one_trust_list_until_the_keys_change(services: Services) -> None:  # noqa: F811
    other = _other(services)
    now = services.clock()
    first = services.trust_list.current(now=now)
    assert other.trust_list.current(now=now).body == first.body
    assert (services.settings.key_dir / SHARED_TRUST_LIST).read_text() == first.body
    # The keys change (a rotation): the first process to notice signs, the other adopts.
    services.keys.rotate(KeyPurpose.ECARD, now=now)
    later = now + timedelta(seconds=1)
    rotated = other.trust_list.current(now=later)
    assert rotated.body != first.body
    assert services.trust_list.current(now=later).body == rotated.body
    other.engine.dispose()
