"""``cardsvc audit``: verify the audit log, prove one event, sign a checkpoint."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from cardsvc.audit.service import CHUNK
from cardsvc.audit.verify import PROGRESS_EVERY
from cardsvc.core.keys import b64url_encode
from cardsvc.core.merkle import verify_inclusion
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings

app = typer.Typer(help="The tamper-evident audit log (Merkle tree, signed checkpoints).")


def _services() -> Services:
    return Services.from_settings(Settings())


_CHUNK_OPTION = typer.Option(min=1, help="Rows and leaves read per query (memory is O(chunk))")
_PROGRESS_OPTION = typer.Option(
    min=0, help="Print progress on stderr every this many rows (0: never)"
)


def _check(services: Services, *, chunk: int, progress_every: int) -> tuple[bool, str]:
    """Verify the whole log against the database: ``(holds, what to say)``; when it does
    not hold, the first divergence or the key events not yet appended."""
    from cardsvc.audit.verify import Progress, verify

    started = time.monotonic()

    def show(p: Progress) -> None:
        of = "" if p.total is None else f" of {p.total:,}"
        rate = p.checked / max(time.monotonic() - started, 1e-9)
        typer.echo(
            f"audit verify: {p.phase} {p.done:,}{of} ({p.checked:,} checked, {rate:,.0f}/s)",
            err=True,
        )

    keys = {r.kid: r.key for r in services.keys.records()}
    with services.engine.connect() as connection:
        report = verify(
            connection, keys.get, chunk=chunk, progress=show, progress_every=progress_every
        )
    problems = []
    pending = services.audit.pending
    if pending is not None and (waiting := pending.count()):
        problems.append(
            f"{waiting} key events in {pending.path} are not in the audit log yet: "
            "run `cardsvc db upgrade`"
        )
    if report.first is not None:
        problems.append(f"DIVERGENCE at {report.first}")
        if report.count > 1:
            problems.append(f"({report.count - 1} more findings)")
    if problems:
        return False, "\n".join(problems)
    return True, (
        f"audit log OK: {report.leaves} leaves, {report.checkpoints} checkpoints, "
        f"{report.rows} audited rows match"
    )


@app.command("verify")
def verify_command(
    chunk: Annotated[int, _CHUNK_OPTION] = CHUNK,
    progress_every: Annotated[int, _PROGRESS_OPTION] = PROGRESS_EVERY,
) -> None:
    """Recompute the tree from the database, check every checkpoint and audited row.

    Streams the log and each table in chunks. Prints the first divergence (leaf index or
    table and row) and exits 1 if any.
    """
    holds, outcome = _check(_services(), chunk=chunk, progress_every=progress_every)
    if not holds:
        typer.echo(outcome, err=True)
        raise typer.Exit(1)
    typer.echo(outcome)


@app.command("prove")
def prove_command(
    index: Annotated[int, typer.Argument(help="Leaf index (a receipt's leaf_index)")],
) -> None:
    """Print an inclusion proof of leaf INDEX against the latest checkpoint (JSON)."""
    services = _services()
    checkpoint = services.audit.latest()
    if checkpoint is None or checkpoint.size <= index:
        checkpoint = services.audit.sign_checkpoint(now=utcnow())
    size, leaf, hashes = services.audit.inclusion(index, checkpoint.size)
    verify_inclusion(leaf, index=index, size=size, proof=hashes, root=checkpoint.root)
    typer.echo(
        json.dumps(
            {
                "index": index,
                "size": size,
                "leaf_hash": b64url_encode(leaf),
                "leaf": services.audit.leaf_data(index).decode("ascii"),
                "hashes": [b64url_encode(h) for h in hashes],
                "root": b64url_encode(checkpoint.root),
                "checkpoint": checkpoint.jws,
            },
            indent=2,
        )
    )


@app.command("checkpoint")
def checkpoint_command(
    full: Annotated[bool, typer.Option(help="Rehash every leaf, not only the new ones")] = False,
    chunk: Annotated[int, _CHUNK_OPTION] = CHUNK,
    progress_every: Annotated[int, _PROGRESS_OPTION] = PROGRESS_EVERY,
) -> None:
    """Verify the log as ``audit verify`` does, then sign a checkpoint of it and store it.

    A signed checkpoint vouches for the log: over a log that fails verification it is
    refused (exit 1) with the first divergence.
    """
    services = _services()
    holds, outcome = _check(services, chunk=chunk, progress_every=progress_every)
    if not holds:
        typer.echo(
            f"refusing to sign a checkpoint: the log fails verification\n{outcome}", err=True
        )
        raise typer.Exit(1)
    checkpoint = services.audit.sign_checkpoint(now=utcnow(), full=full)
    typer.echo(f"checkpoint {checkpoint.id}: size {checkpoint.size} root {checkpoint.root.hex()}")
    typer.echo(checkpoint.jws)
