"""``cardsvc issue-batch`` and ``cardsvc lifecycle sweep``: registry work from the shell."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cardsvc.audit.events import Actor
from cardsvc.db.migrate import require_current
from cardsvc.registry.batch import BatchIssuer, read_rows
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings

lifecycle_app = typer.Typer(help="Card lifecycle jobs.")


def _services() -> Services:
    services = Services.from_settings(Settings())
    require_current(services.engine)
    return services


def _count_rows(path: Path) -> int:
    with path.open("rb") as f:
        return max(sum(1 for _ in f) - 1, 0)


def issue_batch(
    persons_csv: Annotated[
        Path,
        typer.Argument(
            help="CSV with header citizen_id,name[,sex,birth_date,region_code]",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    report: Annotated[
        Path | None,
        typer.Option(help="Where to write rejected rows (default: <file>.rejected.csv)"),
    ] = None,
    operator: Annotated[
        str, typer.Option(help="Who runs the batch (recorded in every event)")
    ] = "batch",
) -> None:
    """Enrol and issue a card (pending personalization) for every row of PERSONS_CSV.

    Rerunning the same file creates nothing twice. Rejected rows go to the report with
    the reason for each; the exit status is 0 even then (check the report).
    """
    services = _services()
    issuer = BatchIssuer(
        services.engine, services.status, validity_years=services.settings.card_validity_years
    )
    total = _count_rows(persons_csv)
    with (
        persons_csv.open(newline="", encoding="utf-8-sig") as stream,
        Progress(
            TextColumn("issuing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
        ) as bar,
    ):
        task = bar.add_task("rows", total=total)
        result = issuer.run(
            read_rows(stream),
            actor=Actor(f"batch:{operator}"),
            now=utcnow(),
            progress=lambda n: bar.advance(task, n),
        )
        bar.update(task, completed=total)
    report_path = report or persons_csv.with_suffix(persons_csv.suffix + ".rejected.csv")
    with report_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["row", "citizen_id", "reason"])
        for rejected in result.rejected:
            writer.writerow([rejected.row, rejected.citizen_id, rejected.reason])
    typer.echo(
        f"rows {result.rows}: persons enrolled {result.persons_enrolled}, "
        f"already enrolled {result.persons_existing}; cards issued {result.cards_issued}, "
        f"already issued {result.cards_existing}; rejected {len(result.rejected)}"
    )
    typer.echo(f"rejected rows: {report_path}")


@lifecycle_app.command("sweep")
def sweep() -> None:
    """Apply what is due now: lapse expired temporary loss reports, expire old cards.

    The API also applies these when a card or status list is read; run this from cron so
    published lists are current even when nobody reads.
    """
    result = _services().cards.sweep(now=utcnow(), force=True)
    typer.echo(f"lapsed {result.lapsed} temporary loss report(s), expired {result.expired} card(s)")
