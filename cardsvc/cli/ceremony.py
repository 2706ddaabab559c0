"""``cardsvc ceremony``: the key ceremony and the offline root's later work.

Run on the offline side (no database, no ``CARDSVC_*`` settings): everything comes from
the reviewed ceremony file (see :mod:`cardsvc.keystore.ceremony_config` for its shape).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import typer

from cardsvc.keystore import ceremony
from cardsvc.keystore.ceremony_config import load_config
from cardsvc.services import utcnow

app = typer.Typer(help="The key ceremony (root and issuing keys) and the offline root.")

ConfigArg = Annotated[
    Path, typer.Argument(help="The reviewed ceremony file (TOML)", exists=True, dir_okay=False)
]


@app.command("check")
def check(config_file: ConfigArg) -> None:
    """Validate a ceremony file without touching a token.

    Fields, purposes, labels, stores not in use, outputs not there yet.
    """
    report = ceremony.check(load_config(config_file))
    for line in report.lines:
        typer.echo(line)
    typer.echo("ok: nothing was created")


@app.command("run")
def run(config_file: ConfigArg) -> None:
    """Make the root and the issuing keys, and sign the first trust list.

    Writes the root JWK, the trust list, the JWKS and the transcript.
    """
    config = load_config(config_file)
    result = ceremony.run(config, now=utcnow())
    typer.echo(f"config sha256 {config.sha256}")
    typer.echo(f"root           {result.root.kid}  on {config.root_store.describe()}")
    for record, spec in zip(result.keys, config.keys, strict=True):
        typer.echo(f"{record.purpose.value:22} {record.kid}  {spec.label!r}")
    typer.echo(f"trust list sequence {result.trust_list.sequence}")
    for path in config.outputs.all():
        typer.echo(f"wrote {path}")


@app.command("sign-trust-list")
def sign_trust_list(
    config_file: ConfigArg,
    unsigned: Annotated[
        Path,
        typer.Argument(
            help="The unsigned list from `cardsvc keys prepare-trust-list`",
            exists=True,
            dir_okay=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write the signed trust list")],
) -> None:
    """Sign, with the offline root, a trust list the online issuer prepared."""
    config = load_config(config_file)
    data = unsigned.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    typer.echo(f"unsigned list sha256 {digest} (compare it with the issuer's)")
    trust_list, _token = ceremony.sign_trust_list(config, data, out, now=utcnow())
    typer.echo(f"signed trust list sequence {trust_list.sequence} for {trust_list.issuer}")
    for key in trust_list.keys:
        typer.echo(
            f"  {key.purpose.value:22} {key.key.kid}  from {key.not_before:%Y-%m-%dT%H:%M:%SZ}"
            f" to {key.not_after:%Y-%m-%dT%H:%M:%SZ}"
        )
    typer.echo(f"wrote {out}")
