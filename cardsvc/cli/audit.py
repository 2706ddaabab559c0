"""``cardsvc audit``: verify the audit log, prove one event, sign a checkpoint."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cardsvc.core.keys import b64url_encode
from cardsvc.core.merkle import verify_inclusion
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings

app = typer.Typer(help="The tamper-evident audit log (Merkle tree, signed checkpoints).")


def _services() -> Services:
    return Services.from_settings(Settings())


@app.command("verify")
def verify_command() -> None:
    """Recompute the tree from the database, check every checkpoint and audited row.

    Prints the first divergence (leaf index or table and row) and exits 1 if any.
    """
    from cardsvc.audit.verify import verify

    services = _services()
    keys = {r.kid: r.key for r in services.keys.records()}
    with services.engine.connect() as connection:
        report = verify(connection, keys.get)
    first = report.first
    if first is None:
        typer.echo(
            f"audit log OK: {report.leaves} leaves, {report.checkpoints} checkpoints, "
            f"{report.rows} audited rows match"
        )
        return
    typer.echo(f"DIVERGENCE at {first}", err=True)
    if len(report.divergences) > 1:
        typer.echo(f"({len(report.divergences) - 1} more findings)", err=True)
    raise typer.Exit(1)


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
) -> None:
    """Recompute the root from the stored leaves, sign a checkpoint and store it."""
    checkpoint = _services().audit.sign_checkpoint(now=utcnow(), full=full)
    typer.echo(f"checkpoint {checkpoint.id}: size {checkpoint.size} root {checkpoint.root.hex()}")
    typer.echo(checkpoint.jws)
