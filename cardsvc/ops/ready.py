"""Readiness: what the issuer needs before it should get traffic, checked in order.

Liveness asks nothing (the process answers); readiness asks every dependency: the
database reachable and at the code's schema revision, Redis when configured (it holds
one-time use and rate limits: without it verify answers 503), and the keys loaded (the
root, or in offline-root mode the installed, unexpired trust list). The first that fails
is named, with a ``Retry-After``, so a load balancer and an operator see the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cardsvc.core.keys import KeyPurpose
from cardsvc.db.migrate import current_revision, head_revision
from cardsvc.errors import CardsvcError, Unavailable
from cardsvc.keystore.service import KeyService
from cardsvc.redisstore import RedisStore

#: Seconds a load balancer should wait before asking again.
RETRY_AFTER_SECONDS = 5


class NotReadyError(Unavailable, CardsvcError):
    """A dependency the issuer needs does not answer, or is not set up."""

    code = "not-ready"
    retry_after = RETRY_AFTER_SECONDS

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.fields = {"dependency": dependency}


@dataclass(frozen=True, kw_only=True)
class Readiness:
    revision: str
    redis: bool
    issuing_keys: int


def check_ready(
    engine: Engine, keys: KeyService, redis: RedisStore | None, *, now: Callable[[], datetime]
) -> Readiness:
    """Every dependency, in order; raises :class:`NotReadyError` naming the first that fails.

    Blocking (database, Redis, a key store on a token): run it in a thread.
    """
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        raise NotReadyError("database", f"unreachable ({type(exc).__name__})") from None
    expected = head_revision()
    if revision != expected:
        raise NotReadyError(
            "database", f"schema at {revision or 'nothing'}, the code needs {expected}: "
            "run `cardsvc db upgrade`",
        )  # fmt: skip
    if redis is not None:
        try:
            redis.blocking.ping()
        except Exception as exc:  # any failure of the client: connection, timeout, auth
            raise NotReadyError("redis", f"unreachable ({type(exc).__name__})") from None
    try:
        keys.check_ready()
        records = keys.records()
        offline = keys.offline_root
        if offline is not None:
            installed = offline.require_installed().trust_list
            if installed.expires_at <= now():
                raise NotReadyError(
                    "keys", f"the installed trust list {installed.sequence} has expired"
                )
    except NotReadyError:
        raise
    except CardsvcError as exc:
        raise NotReadyError("keys", exc.detail) from None
    issuing = sum(1 for r in records if r.purpose is not KeyPurpose.ROOT)
    return Readiness(revision=revision, redis=redis is not None, issuing_keys=issuing)
