"""``cardsvc entitlements import FILE``: load benefit entitlements from a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

from cardsvc.audit.events import Actor
from cardsvc.db.migrate import require_current
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings

app = typer.Typer(help="The benefit ledger: entitlements per person, benefit and period.")


@app.command("import")
def import_entitlements(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with header citizen_id,benefit,period,amount_fen (period YYYY-MM, fen)",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    report: Annotated[
        Path | None,
        typer.Option(help="Where to write rejected rows (default: <file>.rejected.csv)"),
    ] = None,
    operator: Annotated[str, typer.Option(help="Who runs the import (recorded)")] = "import",
) -> None:
    """Create one entitlement per row. Re-running the same file creates nothing twice;
    a row for an existing (person, benefit, period) with another amount is rejected.
    Rejected rows go to the report with the reason; the exit status is 1 if there are any.
    """
    services = Services.from_settings(Settings())
    require_current(services.engine)
    result = services.ledger.import_csv(file, actor=Actor(f"import:{operator}"), now=utcnow())
    report_path = report or file.with_suffix(file.suffix + ".rejected.csv")
    with report_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "reason"])
        writer.writerows(result.rejected)
    typer.echo(
        f"created {result.created}, unchanged {result.unchanged}, "
        f"rejected {len(result.rejected)} (report: {report_path})"
    )
    if result.rejected:
        raise typer.Exit(1)
