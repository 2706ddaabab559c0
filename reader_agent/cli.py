"""``reader-agent``: the counter-side agent (readers, cards, offline journal)."""

from __future__ import annotations

from typing import Annotated

import typer

from reader_agent.errors import AgentError

app = typer.Typer(
    help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False
)


@app.callback()
def _root() -> None:
    """The counter-side agent: talks to card readers over PC/SC (pcscd)."""


@app.command()
def readers(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for pcscd")] = 5.0,
) -> None:
    """List the card readers pcscd knows, with the ATR of any card present."""
    from reader_agent import pcsc

    names = pcsc.list_readers(timeout=timeout)
    if not names:
        typer.echo("no readers")
    for name in names:
        try:
            atr = pcsc.card_atr(name, timeout=timeout).hex(" ").upper()
        except AgentError:
            atr = "no card"
        typer.echo(f"{name}  [{atr}]")


def main() -> None:
    """Console entry point: typed errors become one line on stderr and exit status 1."""
    try:
        app()
    except AgentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
