"""``cardsvc``: operate the issuer (keys, database, API server).

Settings come from ``CARDSVC_*`` environment variables; ``cardsvc --help`` and
``cardsvc COMMAND --help`` explain each command.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from cardsvc.cli import batch, bundles, verify
from cardsvc.cli.audit import app as audit_app
from cardsvc.cli.ceremony import app as ceremony_app
from cardsvc.cli.clients import app as clients_app
from cardsvc.cli.entitlements import app as entitlements_app
from cardsvc.core.errors import CoreError
from cardsvc.core.files import write_atomically
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.trustlist import TrustList
from cardsvc.errors import CardsvcError, ConfigurationError
from cardsvc.keystore.ceremony import unsigned_bytes
from cardsvc.keystore.stacked import StackedBackend
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings

app = typer.Typer(
    help=__doc__,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
keys_app = typer.Typer(help="Manage the key store: root key and purpose-bound issuing keys.")
db_app = typer.Typer(help="Manage the database schema (Alembic migrations).")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.command("issue-batch")(batch.issue_batch)
app.add_typer(batch.lifecycle_app, name="lifecycle")
app.add_typer(clients_app, name="clients")
app.add_typer(audit_app, name="audit")
app.add_typer(entitlements_app, name="entitlements")
app.add_typer(bundles.app, name="bundles")
app.add_typer(ceremony_app, name="ceremony")
app.command("verify", cls=verify.VerifyCommand)(verify.verify)


def _services() -> Services:
    return Services.from_settings(Settings())


def _listening_services(host: str | None, port: int | None) -> tuple[Services, str, int]:
    """Services for a server; without CARDSVC_ISSUER the issuer is where it listens."""
    from cardsvc.ops import logs

    settings = Settings()
    # A server's every log line, from here on, goes through one redacting handler (JSON
    # lines with the request id by default).
    logs.configure(settings.log_level, json_lines=settings.log_format == "json")
    host, port = host or settings.host, port or settings.port
    if "issuer" not in settings.model_fields_set:
        settings = settings.model_copy(update={"issuer": f"http://{host}:{port}"})
    return Services.from_settings(settings), host, port


@keys_app.command("init")
def keys_init() -> None:
    """Create the root key and one key per issuing purpose (only those missing)."""
    services = _services()
    created = services.keys.init(now=utcnow())
    for record in created:
        typer.echo(f"created {record.purpose.value:22} {record.kid}")
    if not created:
        typer.echo(f"key store in {services.settings.key_dir} already complete")
    _say_waiting(services)


def _say_waiting(services: Services) -> None:
    pending = services.audit.pending
    if pending is not None and (waiting := pending.count()):
        typer.echo(
            f"{waiting} key events wait in {pending.path} for the audit log "
            "(it has no tables yet): `cardsvc db upgrade` appends them"
        )


def _append_waiting(services: Services) -> None:
    pending = services.audit.pending
    appended = pending.drain(services.engine) if pending is not None else 0
    if appended:
        typer.echo(f"appended {appended} key events kept since the key store changed")


@keys_app.command("list")
def keys_list() -> None:
    """List every key with its purpose and schedule (no passphrase needed)."""
    keys = _services().keys
    if keys.offline_root is not None:
        installed = keys.offline_root.installed()
        if installed is None:
            typer.echo("offline root: no trust list installed yet")
        else:
            tl = installed.trust_list
            typer.echo(
                f"offline root: trust list sequence {tl.sequence} installed, expires "
                f"{tl.expires_at.isoformat()} (prepare and sign the next one before then)"
            )
    for r in keys.records():
        retires = r.retires_at.isoformat() if r.retires_at else "-"
        until = r.verify_until.isoformat() if r.verify_until else "-"
        typer.echo(
            f"{r.purpose.value:22} {r.kid}  signs from {r.activates_at.isoformat()}"
            f"  retires {retires}  verifiable until {until}"
        )


@keys_app.command("rotate")
def keys_rotate(
    purpose: Annotated[KeyPurpose, typer.Argument(help="Which issuing key to replace")],
) -> None:
    """Publish a new key for PURPOSE; it signs one cache TTL from now, the old one retires."""
    result = _services().keys.rotate(purpose, now=utcnow())
    typer.echo(f"new {purpose.value} key {result.new.kid} signs from {result.new.activates_at}")
    for old in result.retired:
        typer.echo(
            f"retiring {old.kid}: last signature {old.retires_at}, "
            f"verifiable until {old.verify_until}"
        )


@keys_app.command("export-trust-list")
def keys_export_trust_list() -> None:
    """Sign a new trust list with the root key and print it (compact JWS)."""
    typer.echo(_services().keys.issue_trust_list(now=utcnow()))


def _write_unsigned(trust_list: TrustList, out: Path) -> None:
    data = unsigned_bytes(trust_list)
    write_atomically(out, data, mode=0o644)
    typer.echo(f"trust list sequence {trust_list.sequence}, unsigned, in {out}")
    for key in trust_list.keys:
        typer.echo(
            f"  {key.purpose.value:22} {key.key.kid}  from {key.not_before:%Y-%m-%dT%H:%M:%SZ}"
        )
    typer.echo(f"sha256 {hashlib.sha256(data).hexdigest()}: compare it on the offline side")
    typer.echo("sign it there: cardsvc ceremony sign-trust-list ceremony.toml FILE --out SIGNED")


@keys_app.command("prepare-trust-list")
def keys_prepare_trust_list(
    out: Annotated[Path, typer.Option("--out", help="Where to write the unsigned list")],
    rotate: Annotated[
        list[KeyPurpose] | None,
        typer.Option(help="Make a new key for this purpose (repeat for several)"),
    ] = None,
) -> None:
    """Offline root: write the next trust list, unsigned, for the offline root to sign.

    With --rotate, a new key per purpose is made now; it signs nothing until the signed
    list is imported, and then one cache TTL later (the key it replaces retires then).
    """
    services = _services()
    trust_list = services.keys.prepare_trust_list(now=utcnow(), rotate=tuple(rotate or ()))
    _write_unsigned(trust_list, out)
    _say_waiting(services)


@keys_app.command("import-trust-list")
def keys_import_trust_list(
    signed: Annotated[
        Path,
        typer.Argument(help="The trust list the offline root signed", exists=True, dir_okay=False),
    ],
) -> None:
    """Offline root: check a signed trust list and install it.

    Checked against the pinned root, the installed sequence number and the keys this
    issuer holds.
    """
    services = _services()
    token = signed.read_text(encoding="ascii", errors="replace").strip()
    keys = services.keys
    trust_list = keys.import_trust_list(token, now=utcnow(), leeway=services.leeway)
    typer.echo(f"installed trust list sequence {trust_list.sequence}")
    listed = {k.key.kid for k in trust_list.keys}
    for r in keys.records():
        if r.kid in listed:
            typer.echo(f"  {r.purpose.value:22} {r.kid}  signs from {r.activates_at.isoformat()}")
    _say_waiting(services)


@keys_app.command("move-to-backend")
def keys_move_to_backend(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Offline root: where to write the unsigned trust list"),
    ] = None,
) -> None:
    """A new key on the configured backend for each purpose still on the previous one.

    For moving backends (CARDSVC_PREVIOUS_KEY_DIR names the file store being left).
    The new keys are published now and sign one cache TTL later (offline root: one cache
    TTL after the signed list is imported); the previous keys retire then and stay
    published until their verify_until.
    """
    services = _services()
    backend = services.keys.backend
    if not isinstance(backend, StackedBackend):
        raise ConfigurationError(
            "set CARDSVC_PREVIOUS_KEY_DIR to the key store being left, and the new backend "
            "as the key store"
        )
    purposes = backend.still_previous()
    if not purposes:
        typer.echo("every purpose already signs on the new backend")
        return
    now = utcnow()
    if services.keys.offline_root is not None:
        if out is None:
            raise ConfigurationError("offline root: give --out for the unsigned trust list")
        _write_unsigned(services.keys.prepare_trust_list(now=now, rotate=purposes), out)
    else:
        for purpose in purposes:
            result = services.keys.rotate(purpose, now=now)
            typer.echo(
                f"{purpose.value:22} new key {result.new.kid} signs from "
                f"{result.new.activates_at.isoformat()}; "
                + ", ".join(f"{r.kid} retires then" for r in result.retired)
            )
    _say_waiting(services)


@keys_app.command("export-jwks")
def keys_export_jwks() -> None:
    """Print the JWK Set of every key a verifier may need now."""
    typer.echo(json.dumps(_services().keys.jwks(now=utcnow()), indent=2))


@keys_app.command("export-root")
def keys_export_root() -> None:
    """Print the root public key (JWK) that verifiers pin."""
    typer.echo(json.dumps(_services().keys.root_key().jwk(), indent=2))


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Create or upgrade the database schema."""
    from cardsvc.db.migrate import current_revision, upgrade

    services = _services()
    upgrade(services.engine, revision)
    typer.echo(f"database at revision {current_revision(services.engine)}")
    _append_waiting(services)


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and the one this code needs."""
    from cardsvc.db.migrate import current_revision, head_revision

    typer.echo(f"current {current_revision(_services().engine)}  head {head_revision()}")


def _banner(host: str, port: int) -> None:
    typer.echo(f"cardsvc issuer listening on http://{host}:{port}")
    typer.echo(f"  health      http://{host}:{port}/health")
    typer.echo(f"  keys        http://{host}:{port}/.well-known/jwks.json")
    typer.echo(f"  trust list  http://{host}:{port}/v1/trust-list")
    typer.echo(f"  API docs    http://{host}:{port}/docs")
    typer.echo(f"  wallet      http://{host}:{port}/wallet")
    sys.stdout.flush()


def _serve(services: Services, host: str, port: int) -> None:
    import uvicorn

    from cardsvc.api.app import create_app
    from cardsvc.api.serving import server_config

    api = create_app(services.settings, services=services)
    _banner(host, port)
    # As uvicorn.run: the server re-raises Ctrl-C after its shutdown, which ends a clean stop.
    # Logging is set up (_listening_services); uvicorn's own config and access log off:
    # the app logs each request by route template, never its raw path (cardsvc.api.observe).
    settings = services.settings
    with contextlib.suppress(KeyboardInterrupt):
        config = server_config(api, host=host, port=port, log_config=None, access_log=False,
                               log_level=settings.log_level.lower(),
                               head_timeout=settings.head_timeout_seconds)  # fmt: skip
        uvicorn.Server(config).run()


def _serve_workers(services: Services, host: str, port: int, workers: int) -> None:
    """``workers`` processes behind one listening socket (uvicorn's supervisor).

    Each worker builds its own app from the environment; the settings this process
    resolved (the issuer URL) reach them through it.
    """
    import os

    from uvicorn.supervisors import Multiprocess

    from cardsvc.api.app import create_app
    from cardsvc.api.serving import server_config
    from cardsvc.multiprocess import require_shared_stores

    settings = services.settings
    require_shared_stores(settings, workers=workers)
    create_app(settings, services=services)  # fails here, once, on a bad database or keys
    services.engine.dispose()
    os.environ["CARDSVC_ISSUER"] = settings.issuer
    _banner(host, port)
    config = server_config(
        "cardsvc.api.app:create_app_from_environment",
        host=host,
        port=port,
        factory=True,
        workers=workers,
        # As one process: no uvicorn log config or access log (raw paths); each worker
        # logs through the redacting handler create_app_from_environment sets up.
        log_config=None,
        access_log=False,
        log_level=settings.log_level.lower(),
        head_timeout=settings.head_timeout_seconds,
    )
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[config.bind_socket()]).run()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes behind the one port (more than 1 needs PostgreSQL and "
            "Redis: README, Many worker processes)",
        ),
    ] = 1,
) -> None:
    """Start the issuer API (the database must be migrated and keys initialised)."""
    services, host, port = _listening_services(host, port)
    if workers > 1:
        _serve_workers(services, host, port, workers)
    else:
        _serve(services, host, port)


@app.command()
def run(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Set up what is missing (keys, database schema) and start the issuer API."""
    from cardsvc.db.migrate import upgrade

    services, host, port = _listening_services(host, port)
    upgrade(services.engine)  # first, so key creation is recorded in the audit log
    _append_waiting(services)
    for record in services.keys.init(now=utcnow()):
        typer.echo(f"created {record.purpose.value} key {record.kid}")
    if services.settings.dev_mode:
        from cardsvc.cli.clients import ensure_demo_admin

        client_id, key_path = ensure_demo_admin(services)
        typer.echo(f"demo admin operator {client_id} (key {key_path}); get a token with")
        typer.echo(
            f"  cardsvc clients token {client_id} --key {key_path} --url {services.settings.issuer}"
        )
    _serve(services, host, port)


def main() -> None:
    """Console entry point: typed errors become one line on stderr and exit status 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except (CardsvcError, CoreError) as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise SystemExit(1) from None
    except ValidationError as exc:
        typer.echo(f"error: invalid settings:\n{exc}", err=True)
        raise SystemExit(2) from None
