"""The partner's entry points, light enough for ``pip install 'cardsvc[partner]'``.

``cardsvc-verify`` is ``cardsvc verify`` on its own. ``cardsvc`` itself starts here too:
``cardsvc verify ...`` runs without importing anything of the issuer (FastAPI,
SQLAlchemy, pydantic settings, ...), which a partner does not install; every other
command loads the issuer's command line (:mod:`cardsvc.cli.main`).
"""

from __future__ import annotations

import sys

import typer

from cardsvc.cli import verify

#: Top-level packages of the ``issuer`` extra; missing one means the extra is not there.
ISSUER_PACKAGES = frozenset(
    {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "pydantic",
     "pydantic_settings", "psycopg", "redis", "qrcode"}
)  # fmt: skip

verify_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
verify_app.command("verify", cls=verify.VerifyCommand)(verify.verify)


def verify_main(args: list[str] | None = None, prog_name: str = "cardsvc-verify") -> None:
    """``cardsvc-verify``: exit status 0 valid, 1 invalid, 2 status unknown, 3 usage."""
    verify_app(args=args, prog_name=prog_name)


def main() -> None:
    """``cardsvc``: ``verify`` here; any other command through the issuer's CLI."""
    if sys.argv[1:2] == ["verify"]:
        verify_main(sys.argv[2:], prog_name="cardsvc verify")
        return
    try:
        from cardsvc.cli.main import main as issuer_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ISSUER_PACKAGES:
            raise
        typer.echo(
            f"error: this command needs the issuer's packages ({exc.name} is missing): "
            "pip install 'cardsvc[issuer]'. Partners: `cardsvc verify --help`.",
            err=True,
        )
        raise SystemExit(int(verify.ExitCode.USAGE)) from None
    issuer_main()


if __name__ == "__main__":  # python -m cardsvc.cli.partner verify ...
    main()
