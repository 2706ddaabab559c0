"""Running the issuer as several processes: what each cache is bound to across them.

``cardsvc serve --workers N`` starts N uvicorn worker processes behind one port; more
issuers on other hosts behave the same way. Every process keeps its own memory, so each
cache below is either shared (one store for all), or derived from the shared stores with
a stated bound on how stale it may be in another process:

- **Replay memory** (QR token ``jti``, client assertion ``jti``, device proofs): Redis
  (``redis_url`` / ``redis_cluster_nodes``). Shared: a token used at one worker is
  refused at every other. In-process memory would accept a token once *per worker*,
  so more than one worker without Redis is refused (:func:`require_shared_stores`).
- **Rate limits**: Redis, one count across workers (same rule).
- **Card and e-card status** (:class:`cardsvc.registry.status.StatusLists`): each process
  holds the bits in memory and applies its own changes at commit; other processes'
  changes arrive through ``card_events`` at the next request after
  ``status_sync_interval_seconds`` (default 1 s). Bound: a verify that starts more than
  that interval after a status change commits sees it, at every worker (a late-committing
  PostgreSQL sequence gap is re-read for ``GAP_RETENTION_SECONDS``).
- **E-card views** (:class:`cardsvc.ecards.views.ECardDirectory`): immutable once bound
  (a replaced e-card is dropped locally and revoked through the status list, so other
  workers refuse it within the status bound above). No cross-process staleness matters.
- **E-card nonce secret** (server nonces, counter chip challenges): the setting
  ``ecard_nonce_secret`` when set, otherwise one random secret kept in the database
  (``service_meta``), made by the first process that needs it
  (:func:`shared_nonce_secret`). A nonce issued by one worker is accepted by any other,
  and across restarts.
- **Trust list** (:class:`cardsvc.services.TrustListPublisher`): signed by one process
  at a time under a file lock and kept beside the key store
  (``KEY_DIR/trust-list-published.jws``); the others adopt it. Re-signed when the key
  records change (file index re-read on change; PKCS#11 index at most every few
  seconds) or at half its lifetime. Every worker serves the same list, so a verifier
  never sees the sequence go back from one worker to the next (it would refuse it as a
  rollback). Hosts with separate key directories would each sign their own.
- **Verifier bundles**: versions are numbered in the database (``verifier_bundles``),
  content compared by hash, so processes agree on the version; the per-process cache is
  keyed by that version.
- **Verified access tokens** (:class:`cardsvc.auth.tokens.VerifiedTokenCache`): per
  process, bound by each token's ``exp`` (at most 10 minutes), as for any verifier.
- **Key store records**: the file index is re-read when its file changes (stat per use);
  the PKCS#11 index is re-read at most every ``index_refresh`` seconds.
- **Idempotency keys, transactions, activation codes, sync state**: the database only.

SQLite with more than one worker is refused too: it has one writer at a time, so N
processes writing contend for one file lock and answer ``database is locked`` errors under
load, and the embedded default is meant for one process on one machine; PostgreSQL is the
multi-process database.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardsvc.db.models import ServiceMeta
from cardsvc.errors import ConfigurationError
from cardsvc.settings import Settings

#: The ``service_meta`` row holding the shared nonce secret (hex).
NONCE_SECRET_NAME = "ecard_nonce_secret"  # noqa: S105 - a row name, not a secret


def require_shared_stores(settings: Settings, *, workers: int) -> None:
    """Refuse ``workers`` > 1 unless replay memory and limits are shared and the database
    takes writers from many processes."""
    if workers <= 1:
        return
    if not settings.redis_url and not settings.redis_cluster_nodes:
        raise ConfigurationError(
            f"--workers {workers} needs Redis (CARDSVC_REDIS_URL or "
            "CARDSVC_REDIS_CLUSTER_NODES): without it each worker keeps its own replay "
            "memory and rate limits, so a QR token would be accepted once per worker"
        )
    if settings.database_url.startswith("sqlite"):
        raise ConfigurationError(
            f"--workers {workers} needs PostgreSQL (CARDSVC_DATABASE_URL): SQLite takes one "
            "writer at a time, and the embedded default serves one process"
        )


def shared_nonce_secret(engine: Engine) -> bytes:
    """The e-card nonce secret every process of this issuer shares, from the database.

    Made at random by the first process that asks (a lost insert race reads the winner's).
    """
    for _ in range(3):
        with Session(engine) as session:
            row = session.scalar(select(ServiceMeta).where(ServiceMeta.name == NONCE_SECRET_NAME))
            if row is not None:
                return bytes.fromhex(row.value)
            value = secrets.token_bytes(32)
            session.add(
                ServiceMeta(name=NONCE_SECRET_NAME, value=value.hex(), updated_at=datetime.now(UTC))
            )
            try:
                session.commit()
            except IntegrityError:
                continue  # another process made it first: read theirs
            return value
    raise ConfigurationError("could not read or store the shared e-card nonce secret")
