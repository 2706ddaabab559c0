"""The app factory: one FastAPI app per settings object, no globals."""

from __future__ import annotations

from cardsvc import __version__
from cardsvc.api import problems
from cardsvc.api.fastpath import IssuerApp, VerifyFastPath
from cardsvc.api.limits import BodyLimits
from cardsvc.api.observe import Observe
from cardsvc.api.routes import (
    audit,
    bundles,
    card_entitlements,
    cards,
    ecards,
    entitlements,
    health,
    holder,
    keys,
    metrics,
    persons,
    receipts,
    scan,
    status_lists,
    token,
    transaction_batches,
    transaction_reviews,
    transactions,
    wallet,
)
from cardsvc.db.migrate import require_current
from cardsvc.services import Services
from cardsvc.settings import Settings


def create_app(
    settings: Settings, *, services: Services | None = None, fast_verify: bool = True
) -> IssuerApp:
    """Build the issuer app.

    Refuses to build on an unmigrated database or a missing key store, so a misconfigured
    issuer fails at start with the command to run, not on its first request.
    """
    services = services or Services.from_settings(settings)
    require_current(services.engine)
    services.keys.check_ready()
    app = IssuerApp(
        title="cardsvc issuer",
        version=__version__,
        description="Issues social security cards and e-cards and publishes what verifiers need.",
    )
    app.state.services = services
    problems.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(keys.router)
    app.include_router(audit.router)
    app.include_router(persons.router)
    app.include_router(cards.router)
    app.include_router(status_lists.router)
    app.include_router(bundles.router)
    app.include_router(token.router)
    app.include_router(ecards.router)
    app.include_router(holder.router)
    app.include_router(entitlements.router)
    app.include_router(card_entitlements.router)
    app.include_router(transaction_reviews.router)
    app.include_router(transactions.router)
    app.include_router(transaction_batches.router)
    app.include_router(receipts.router)
    app.include_router(wallet.router)
    app.include_router(scan.router)
    configured = services.settings
    max_bytes, timeout = configured.max_request_bytes, configured.body_timeout_seconds
    app.add_middleware(BodyLimits, max_bytes=max_bytes, timeout=timeout)
    if fast_verify:
        # Ahead of everything: the hot verify path skips FastAPI's middleware, routing and
        # dependency resolution entirely (cardsvc.api.fastpath), but not the body limits.
        app.fast_path = BodyLimits(VerifyFastPath(services), max_bytes=max_bytes, timeout=timeout)
    # Outermost: every request gets its id, its access log line and its metrics.
    app.observe = Observe(app.dispatch, services.metrics, fast_route=app.fast_route,
                          access_log=configured.access_log)  # fmt: skip
    app.router.on_shutdown.append(services.metrics.process_stopped)
    return app


def create_app_from_environment() -> IssuerApp:
    """The issuer app from ``CARDSVC_*`` settings: the factory each worker process of
    ``cardsvc serve --workers N`` calls (uvicorn imports it by name in each worker).

    A spawned worker starts with no logging set up: it gets the same redacting handler as
    a one-process server before anything logs."""
    from cardsvc.ops import logs

    settings = Settings()
    logs.configure(settings.log_level, json_lines=settings.log_format == "json")
    return create_app(settings)
