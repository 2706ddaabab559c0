"""``cardsvc bundles prune``: retention of verifier bundle versions from the shell."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from cardsvc.db.migrate import require_current
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings

app = typer.Typer(help="Verifier bundle versions and their stored shard lists.")


@app.command("prune")
def prune(
    keep_hours: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Keep versions issued this many hours back "
            "(default: CARDSVC_BUNDLE_RETENTION_HOURS)",
        ),
    ] = None,
) -> None:
    """Delete bundle versions older than the retention window (never the newest) and the
    stored shard lists no remaining version names.

    Serving processes do this at most hourly; run it from cron when bundles are served
    rarely, or to see what retention keeps. Safe while the API serves; running it twice
    removes nothing more.
    """
    services = Services.from_settings(Settings())
    require_current(services.engine)
    hours = keep_hours if keep_hours is not None else services.settings.bundle_retention_hours
    result = services.bundles.prune(now=utcnow(), keep=timedelta(hours=hours))
    typer.echo(
        f"removed {result.versions_removed} bundle version(s) issued more than {hours} h ago "
        f"and {result.lists_removed} stored shard list(s)"
    )
    oldest = "-" if result.oldest_kept is None else str(result.oldest_kept)
    typer.echo(
        f"kept {result.versions_kept} version(s) (oldest {oldest}; a verifier on an older "
        f"one gets a full bundle) and {result.lists_kept} shard list(s)"
    )
