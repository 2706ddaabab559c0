"""``cardsvc clients``: register operators, terminals and partners; get a token."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.audit.events import Actor
from cardsvc.auth.clients import Client, ClientKind
from cardsvc.auth.partners import change_partner_policy
from cardsvc.core.assertion import ASSERTION_TYPE, make_client_assertion
from cardsvc.core.keys import public_jwk
from cardsvc.core.signing import LocalSigner
from cardsvc.db.states import Role
from cardsvc.errors import ConfigurationError
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings

app = typer.Typer(help="Operators, counter terminals and partners: who may call the API.")


def _services() -> Services:
    return Services.from_settings(Settings())


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _show(client: Client) -> str:
    who = client.role.value if client.role else " ".join(sorted(client.scopes))
    if client.partner is not None:
        purposes = ",".join(sorted(client.partner.purposes))
        who += f"; purposes {purposes}; {client.partner.rate_limit}/min"
    state = "active" if client.active else "SUSPENDED"
    return f"{client.client_id:20} {client.kind.value:9} {state:9} {client.display_name}  [{who}]"


@app.command("create")
def create(
    kind: Annotated[ClientKind, typer.Argument(help="operator, terminal or partner")],
    name: Annotated[str, typer.Argument(help="Display name (a person, a counter, a company)")],
    role: Annotated[Role | None, typer.Option(help="Operator role")] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="A scope of a machine client (repeat; default: all its kind may hold: "
            "a terminal cards:personalize, transactions:write, verify; a partner verify)"
        ),
    ] = None,
    purpose: Annotated[
        list[str] | None, typer.Option(help="A purpose a partner may verify (repeat)")
    ] = None,
    rate_limit: Annotated[
        int | None, typer.Option(help="A partner's verify requests per minute (default 600)")
    ] = None,
    key_out: Annotated[
        Path | None, typer.Option(help="Write a new private key here (0600)")
    ] = None,
    jwk: Annotated[
        Path | None, typer.Option(help="Register this public JWK instead (key made elsewhere)")
    ] = None,
) -> None:
    """Register a client. Give --jwk (best: the key never leaves its owner) or --key-out."""
    if (key_out is None) == (jwk is None):
        raise ConfigurationError("give exactly one of --key-out FILE or --jwk FILE")
    if jwk is not None:
        public = json.loads(jwk.read_text())
    else:
        assert key_out is not None  # noqa: S101 - one of the two, checked above
        private = ec.generate_private_key(ec.SECP256R1())
        _write_private_key(key_out, private)
        public = public_jwk(private.public_key())
    client = _services().clients.register(
        kind=kind,
        display_name=name,
        role=role,
        scopes=frozenset(scope) if scope else None,
        purposes=frozenset(purpose) if purpose else None,
        rate_limit=rate_limit,
        jwk=public,
        created_by="cli",
        now=utcnow(),
    )
    typer.echo(_show(client))
    typer.echo(f"client_id {client.client_id}")
    if key_out is not None:
        typer.echo(f"private key {key_out} (keep it on the client's machine only)")


@app.command("list")
def list_clients() -> None:
    """Every client with its kind, state and role or scopes."""
    for client in _services().clients.list():
        typer.echo(_show(client))


@app.command("suspend")
def suspend(client_id: str) -> None:
    """Suspend CLIENT_ID: no new tokens, and its tokens already issued are refused within
    seconds by every issuer process."""
    typer.echo(_show(_services().clients.set_active(client_id, active=False)))


@app.command("resume")
def resume(client_id: str) -> None:
    """Allow CLIENT_ID to get tokens again."""
    typer.echo(_show(_services().clients.set_active(client_id, active=True)))


@app.command("policy")
def policy(
    client_id: Annotated[str, typer.Argument(help="The partner's client id")],
    purpose: Annotated[
        list[str] | None,
        typer.Option(help="A purpose the partner may verify (repeat); replaces the list"),
    ] = None,
    rate_limit: Annotated[
        int | None, typer.Option(help="The partner's verify requests per minute")
    ] = None,
) -> None:
    """Change a partner's purposes and/or rate limit (audited).

    Tokens already issued keep the old policy until they expire (within 10 minutes).
    """
    services = _services()
    change_partner_policy(
        services.engine,
        client_id,
        purposes=frozenset(purpose) if purpose else None,
        rate_limit=rate_limit,
        actor=Actor("cli"),
        now=utcnow(),
    )
    typer.echo(_show(services.clients.get(client_id)))


@app.command("token")
def token(
    client_id: Annotated[str, typer.Argument(help="The client's id")],
    key: Annotated[Path, typer.Option(help="The client's private key (PEM)")],
    url: Annotated[str | None, typer.Option(help="Issuer base URL")] = None,
    scope: Annotated[str | None, typer.Option(help="Space-separated scopes to ask for")] = None,
) -> None:
    """As the client: sign an assertion, ask the issuer for an access token, print it."""
    base = url or Settings().issuer
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{key} is not an EC private key")
    endpoint = f"{base}/v1/oauth/token"
    assertion = make_client_assertion(
        LocalSigner(private), client_id=client_id, audience=endpoint, now=utcnow()
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    if scope:
        form["scope"] = scope
    request = urllib.request.Request(  # noqa: S310 - the operator's own issuer URL
        endpoint,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            typer.echo(json.load(response)["access_token"])
    except urllib.error.HTTPError as exc:
        problem = json.loads(exc.read() or b"{}")
        raise ConfigurationError(f"token refused: {problem.get('detail', exc.reason)}") from None


def ensure_demo_admin(services: Services) -> tuple[str, Path]:
    """The development demo's admin operator: created once, its key beside the key store."""
    key_path = services.settings.key_dir / "demo-admin.pem"
    for client in services.clients.list():
        if client.display_name == "demo admin" and key_path.exists():
            return client.client_id, key_path
    private = ec.generate_private_key(ec.SECP256R1())
    key_path.unlink(missing_ok=True)
    _write_private_key(key_path, private)
    client = services.clients.register(
        kind=ClientKind.OPERATOR,
        display_name="demo admin",
        role=Role.ADMIN,
        jwk=public_jwk(private.public_key()),
        created_by="cardsvc run",
        now=utcnow(),
    )
    return client.client_id, key_path
