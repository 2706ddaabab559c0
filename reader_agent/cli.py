"""``reader-agent``: the counter-side agent (readers, cards, offline caches, emulator)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reader_agent.errors import AgentError

if TYPE_CHECKING:
    from cardsvc.core.keys import VerifyingKey
    from reader_agent.issuer import IssuerClient

app = typer.Typer(
    help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False
)
pin_app = typer.Typer(help="Change or unblock the cardholder's PIN.", no_args_is_help=True)
cache_app = typer.Typer(help="The offline trust list and status list cache.", no_args_is_help=True)
app.add_typer(pin_app, name="pin")
app.add_typer(cache_app, name="cache")
clerk_app = typer.Typer(help="The clerks who may sign in on the counter page.",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(clerk_app, name="clerk")

CacheDir = Annotated[
    Path,
    typer.Option(envvar="READER_AGENT_CACHE_DIR", help="Offline cache directory"),
]
ReaderOpt = Annotated[
    str | None, typer.Option(help="Reader name (default: the first reader with a card)")
]
TimeoutOpt = Annotated[float, typer.Option(help="Deadline of every PC/SC operation (s)")]
_DEFAULT_CACHE = Path("var/reader-agent")


@app.callback()
def _root(
    verbose: Annotated[int, typer.Option("-v", count=True, help="-v debug, -vv APDU traffic")] = 0,
) -> None:
    """The counter-side agent: talks to card readers over PC/SC (pcscd)."""
    from reader_agent.apdu import TRAFFIC

    level = {0: logging.WARNING, 1: logging.DEBUG}.get(verbose, TRAFFIC)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _now() -> datetime:
    return datetime.now(UTC)


def _pick_reader(reader: str | None, timeout: float) -> str:
    from reader_agent import pcsc
    from reader_agent.errors import NoCardError

    if reader is not None:
        return reader
    for name in pcsc.list_readers(timeout=timeout):
        try:
            pcsc.card_atr(name, timeout=timeout)
        except NoCardError:
            continue
        return name
    raise NoCardError("no reader has a card: insert one", operation="find card")


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


@app.command()
def check(
    reader: ReaderOpt = None,
    cache_dir: CacheDir = _DEFAULT_CACHE,
    pin: Annotated[bool, typer.Option(help="Ask the cardholder for the PIN")] = True,
    allow_last_try: Annotated[
        bool, typer.Option(help="Present the PIN even when one try is left (explicit override)")
    ] = False,
    max_status_age_hours: Annotated[float, typer.Option(help="Oldest usable status list")] = 24.0,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Check that the card is genuine and in good standing (offline), then the PIN.

    Exit status 0 only for a genuine card; 2 for any other verdict.
    """
    from reader_agent import pcsc
    from reader_agent.cache import AgentCache
    from reader_agent.card.session import SscSession
    from reader_agent.check import check_card

    def prompt(tries: int) -> str | None:
        value: str = typer.prompt(f"PIN ({tries} tries left)", hide_input=True)
        return value

    name = _pick_reader(reader, timeout)
    with pcsc.connect(name, timeout=timeout) as connection:
        result = check_card(
            SscSession(connection),
            cache=AgentCache(cache_dir),
            now=_now(),
            pin=prompt if pin else None,
            allow_last_try=allow_last_try,
            max_status_age=timedelta(hours=max_status_age_hours),
        )
    for step in result.steps:
        typer.echo(f"  {step.outcome.value:7} {step.step.value:20} {step.reason}")
    if result.document is not None:
        doc = result.document
        typer.echo(f"card {doc.card_number}  {doc.name}  expires {doc.expiry_date}")
    typer.echo(f"verdict: {result.verdict.value.upper()}")
    if not result.genuine:
        raise typer.Exit(2)


@pin_app.command("change")
def pin_change(reader: ReaderOpt = None, timeout: TimeoutOpt = 5.0) -> None:
    """Change the PIN (the cardholder types the old and the new one)."""
    from reader_agent import pcsc
    from reader_agent.card.session import SscSession

    name = _pick_reader(reader, timeout)
    with pcsc.connect(name, timeout=timeout) as connection:
        session = SscSession(connection)
        status = session.pin_status()
        if status.blocked:
            raise typer.BadParameter("the PIN is blocked: use `reader-agent pin unblock`")
        old = typer.prompt(f"current PIN ({status.tries_left} tries left)", hide_input=True)
        new = typer.prompt("new PIN", hide_input=True, confirmation_prompt=True)
        session.change_pin(old, new)
    typer.echo("PIN changed")


@pin_app.command("unblock")
def pin_unblock(reader: ReaderOpt = None, timeout: TimeoutOpt = 5.0) -> None:
    """Unblock the PIN with the PUK and set a new PIN."""
    from reader_agent import pcsc
    from reader_agent.card.session import SscSession

    name = _pick_reader(reader, timeout)
    with pcsc.connect(name, timeout=timeout) as connection:
        session = SscSession(connection)
        puk_status = session.pin_status(puk=True)
        if puk_status.blocked:
            raise typer.BadParameter("the PUK is blocked too: the card must be replaced")
        puk = typer.prompt(f"PUK ({puk_status.tries_left} tries left)", hide_input=True)
        new = typer.prompt("new PIN", hide_input=True, confirmation_prompt=True)
        session.unblock_pin(puk, new)
    typer.echo("PIN unblocked and set")


@cache_app.command("update")
def cache_update(
    issuer: Annotated[
        str | None, typer.Option(help="Issuer base URL: follows {issuer}/v1/bundles/latest")
    ] = None,
    bundle: Annotated[
        str | None, typer.Option(help="Verifier bundle URL, or a file exported by the issuer")
    ] = None,
    root: Annotated[
        Path | None, typer.Option(help="Root public JWK to pin (first run only)")
    ] = None,
    cache_dir: CacheDir = _DEFAULT_CACHE,
) -> None:
    """Refresh the offline cache from the issuer's signed verifier bundle.

    From a URL the bundle comes as a delta on the one held (changed entries only; nothing
    when nothing changed); a file is taken whole. The trust list inside is rollback-
    protected under the pinned root.
    """
    import json

    from cardsvc.core.errors import CoreError
    from cardsvc.core.fetch import RefreshOutcome
    from cardsvc.core.keys import VerifyingKey
    from reader_agent.cache import AgentCache, CacheError

    cache = AgentCache(cache_dir)
    if root is not None:
        try:
            cache.pin_root(VerifyingKey.from_jwk(json.loads(root.read_text())))
        except (OSError, ValueError, CoreError) as exc:
            raise CacheError(f"cannot use {root} as the root key: {exc}", check="root") from None
    source = bundle or (f"{issuer.rstrip('/')}/v1/bundles/latest" if issuer else None)
    if source is None:
        raise typer.BadParameter("give --issuer or --bundle")
    now = _now()
    if source.startswith(("http://", "https://")):
        refresh = cache.refresh(source, now=now)
        if refresh.outcome in (RefreshOutcome.FAILED, RefreshOutcome.REFUSED):
            raise CacheError(refresh.detail, check="fetch")
        held = refresh.bundle
        what = refresh.detail if refresh.outcome is RefreshOutcome.UPDATED else "unchanged"
    else:
        try:
            token = Path(source).read_text("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise CacheError(f"cannot read {source}: {exc}", check="fetch") from None
        held = cache.install(token, now=now)
        what = f"version {held.version} from {source}"
    assert held is not None  # noqa: S101 - an updated or unchanged refresh holds one
    typer.echo(f"bundle {what}: trust list sequence {held.trust_list.sequence}, "
               f"{len(held.status_lists)} status lists")  # fmt: skip


@app.command()
def emulate(
    slot: Annotated[int, typer.Option(min=0, max=15, help="vpcd slot (port 35963 + N)")] = 0,
    state: Annotated[Path, typer.Option(help="Card state file (created blank)")] = Path(
        "card.json"
    ),
    t0: Annotated[bool, typer.Option("--t0", help="Answer like a T=0 card (61xx/6Cxx)")] = False,
    delay_ms: Annotated[int, typer.Option(min=0, help="Delay before every answer")] = 0,
    drop_after: Annotated[
        int | None, typer.Option(min=0, help="Drop the connection mid-command after N APDUs")
    ] = None,
    drop_after_reads: Annotated[
        int | None,
        typer.Option(min=1, help="Drop the connection at the next APDU after N READ BINARY"),
    ] = None,
) -> None:
    """Run the card emulator: the cardsvc applet in vpcd slot N until Ctrl-C."""
    from reader_agent.emulator.applet import Applet
    from reader_agent.emulator.state import StateFile
    from reader_agent.emulator.vpcd import Faults, VpcdCard

    applet = Applet(store=StateFile(state), t0=t0)
    card = VpcdCard(
        applet,
        slot=slot,
        faults=Faults(delay_ms=delay_ms, drop_after=drop_after, drop_after_reads=drop_after_reads),
    )
    typer.echo(f"emulating {applet.state!r} in vpcd slot {slot}; Ctrl-C to remove the card")
    try:
        card.serve_forever()
    except KeyboardInterrupt:
        card.stop()


@app.command()
def personalize(
    card_number: Annotated[str, typer.Option(help="9-character card number")],
    issuer: Annotated[
        str, typer.Option(envvar="CARDSVC_ISSUER", help="Issuer base URL")
    ] = "http://127.0.0.1:8000",
    client_id: Annotated[
        str | None, typer.Option(help="This terminal's client id at the issuer")
    ] = None,
    client_key: Annotated[
        Path | None, typer.Option(help="This terminal's private key (PEM)")
    ] = None,
    reader: ReaderOpt = None,
    timeout: TimeoutOpt = 10.0,
    chip_alg: Annotated[
        str,
        typer.Option(help="The chip key's algorithm: ES256 (P-256) or SM2SM3 (SM2, cardsvc[sm])"),
    ] = "ES256",
) -> None:
    """Personalise a blank card: key on card -> document signed -> write -> PIN/PUK -> lock.

    With --client-id and --client-key (the real path) the issuer signs: the card must have
    been issued there (pending personalisation); this terminal authenticates with its key
    (private_key_jwt) and sends the chip's public key. (Development: `python -m
    demo.personalize` signs with a local cardsvc key store instead.)
    """
    from reader_agent import pcsc
    from reader_agent.card.session import SscSession
    from reader_agent.personalize import personalize as run_personalize

    if client_id is None or client_key is None:
        raise typer.BadParameter("give --client-id and --client-key (this terminal at the issuer)")
    if chip_alg not in ("ES256", "SM2SM3"):
        raise typer.BadParameter(f"--chip-alg is ES256 or SM2SM3, not {chip_alg!r}")
    client = _issuer_client(issuer, client_id, client_key)
    client.access_token()  # authenticate before touching the card

    def sign_document(chip_key: VerifyingKey) -> str:
        return client.personalize(card_number, chip_key)

    pin = typer.prompt("initial PIN", hide_input=True, confirmation_prompt=True)
    puk = typer.prompt("PUK", hide_input=True, confirmation_prompt=True)
    target = _pick_reader(reader, timeout)
    with pcsc.connect(target, timeout=timeout) as connection:
        result = run_personalize(
            SscSession(connection),
            sign_document=sign_document,
            pin=pin,
            puk=puk,
            chip_alg=chip_alg,
        )
    typer.echo(f"card {card_number} personalised and locked; chip key {result.chip_key.kid}")


StateDir = Annotated[
    Path,
    typer.Option(envvar="READER_AGENT_STATE_DIR", help="Journal and terminal certificate"),
]
IssuerOpt = Annotated[str, typer.Option(envvar="CARDSVC_ISSUER", help="Issuer base URL")]
ClientIdOpt = Annotated[
    str, typer.Option(envvar="READER_AGENT_CLIENT_ID", help="This terminal's client id")
]
ClientKeyOpt = Annotated[
    Path, typer.Option(envvar="READER_AGENT_CLIENT_KEY", help="This terminal's key (PEM)")
]
_DEFAULT_STATE = Path("var/reader-agent/state")


def _counter(
    kind: str, amount_fen: int, entitlement: str | None, reference: str | None,
    issuer: str, client_id: str, client_key: Path, state_dir: Path, cache_dir: Path,
    reader: str | None, timeout: float,
) -> None:  # fmt: skip
    import uuid

    from cardsvc.core.transaction import Kind
    from reader_agent import pcsc
    from reader_agent.cache import AgentCache
    from reader_agent.card.session import SscSession
    from reader_agent.counter import transact
    from reader_agent.journal import Journal

    client = _issuer_client(issuer, client_id, client_key)
    try:
        entitlement_id = uuid.UUID(entitlement) if entitlement else None
    except ValueError:
        raise typer.BadParameter("--entitlement must be a UUID") from None

    def prompt(tries: int) -> str | None:
        value: str = typer.prompt(f"PIN ({tries} tries left)", hide_input=True)
        return value

    name = _pick_reader(reader, timeout)
    with (
        Journal(state_dir, terminal_id=client_id) as opened,
        pcsc.connect(name, timeout=timeout) as connection,
    ):
        result = transact(
            SscSession(connection), kind=Kind(kind), amount_fen=amount_fen,
            entitlement=entitlement_id, reference=reference, journal=opened,
            cache=AgentCache(cache_dir), issuer=client, signer=client.signer,
            state_dir=state_dir, pin=prompt, now=_now,
        )  # fmt: skip
    record = result.record
    typer.echo(f"{result.mode} {kind} seq {record.seq} counter {record.counter} "
               f"amount {amount_fen} fen: {record.state.value}")  # fmt: skip
    if result.mode == "offline" or result.answer is None:
        typer.echo("recorded in the journal; `reader-agent sync` uploads it")


@app.command()
def collect(
    entitlement: Annotated[str, typer.Option(help="The entitlement's id")],
    amount_fen: Annotated[int, typer.Option(min=1, help="Its amount in fen")],
    client_id: ClientIdOpt,
    client_key: ClientKeyOpt,
    issuer: IssuerOpt = "http://127.0.0.1:8000",
    state_dir: StateDir = _DEFAULT_STATE,
    cache_dir: CacheDir = _DEFAULT_CACHE,
    reader: ReaderOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Benefit collection: card check + PIN, then the card signs; online, else offline rules."""
    _counter("benefit", amount_fen, entitlement, None, issuer, client_id, client_key,
             state_dir, cache_dir, reader, timeout)  # fmt: skip


@app.command()
def pay(
    amount_fen: Annotated[int, typer.Option(min=1, help="Amount in fen")],
    reference: Annotated[str, typer.Option(help="Bill reference")],
    client_id: ClientIdOpt,
    client_key: ClientKeyOpt,
    issuer: IssuerOpt = "http://127.0.0.1:8000",
    state_dir: StateDir = _DEFAULT_STATE,
    cache_dir: CacheDir = _DEFAULT_CACHE,
    reader: ReaderOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Fee payment: card check + PIN, then the card signs; online, else offline rules."""
    _counter("fee", amount_fen, None, reference, issuer, client_id, client_key,
             state_dir, cache_dir, reader, timeout)  # fmt: skip


@app.command()
def sync(
    client_id: ClientIdOpt,
    client_key: ClientKeyOpt,
    issuer: IssuerOpt = "http://127.0.0.1:8000",
    state_dir: StateDir = _DEFAULT_STATE,
    include_damaged: Annotated[
        bool, typer.Option(help="Also upload records from a damaged journal part (flagged)")
    ] = False,
    attempts: Annotated[int, typer.Option(min=1, help="Tries, with backoff")] = 5,
    every: Annotated[
        float | None, typer.Option(help="Keep running: sync every N seconds (background)")
    ] = None,
) -> None:
    """Upload the journal's pending records; verifies the hash chain first."""
    import time
    from functools import partial

    from reader_agent.counter import load_certificate, sync_with_retry
    from reader_agent.counter import sync as run_sync
    from reader_agent.journal import Journal

    client = _issuer_client(issuer, client_id, client_key)
    with Journal(state_dir, terminal_id=client_id) as journal:
        while True:
            if not journal.verify().intact:
                typer.echo(f"JOURNAL DAMAGED: {journal.verify().reason}", err=True)
            cert = load_certificate(state_dir, client)
            report = sync_with_retry(
                partial(run_sync, journal, client, certificate=cert,
                        include_damaged=include_damaged),
                attempts=attempts,
            )  # fmt: skip
            typer.echo(f"uploaded {report.uploaded}: {report.accepted} accepted, "
                       f"{report.duplicate} duplicate, {report.conflict} conflict, "
                       f"{report.rejected} rejected; {report.held_back} held back "
                       "(damaged journal part)")  # fmt: skip
            if every is None:
                break
            time.sleep(every)


@app.command()
def journal(
    client_id: ClientIdOpt,
    state_dir: StateDir = _DEFAULT_STATE,
    show: Annotated[
        str, typer.Option(help="pending, synced, conflicts or all")
    ] = "all",
) -> None:
    """The journal: its chain check, and records pending, synced or in conflict."""
    from reader_agent.journal import Journal, RecordState

    groups = {
        "pending": {RecordState.SIGNED, RecordState.PREPARED},
        "synced": {RecordState.ACCEPTED, RecordState.DUPLICATE, RecordState.VOID},
        "conflicts": {RecordState.CONFLICT, RecordState.REJECTED},
    }
    if show != "all" and show not in groups:
        raise typer.BadParameter("--show must be pending, synced, conflicts or all")
    with Journal(state_dir, terminal_id=client_id) as opened:
        report = opened.report
        typer.echo(f"chain: {'intact' if report.intact else 'DAMAGED: ' + str(report.reason)}"
                   f" ({report.entries} entries)")  # fmt: skip
        for record in opened.records():
            if show != "all" and record.state not in groups[show]:
                continue
            try:
                data = record.transaction
                what = f"{data.kind.value} card {data.card} {data.amount_fen} fen"
            except Exception:  # a damaged record is still listed
                what = "unreadable data"
            detail = ""
            if record.answer and record.state is RecordState.CONFLICT:
                detail = f" ({record.answer.get('reason') or record.answer.get('detail')})"
            flag = " [damaged part]" if record.damaged else ""
            typer.echo(f"  {record.seq:6} {record.mode:7} {record.state.value:9} "
                       f"counter {record.counter} {what}{detail}{flag}")  # fmt: skip


@app.command()
def serve(
    client_id: ClientIdOpt,
    client_key: ClientKeyOpt,
    issuer: IssuerOpt = "http://127.0.0.1:8000",
    state_dir: StateDir = _DEFAULT_STATE,
    cache_dir: CacheDir = _DEFAULT_CACHE,
    host: Annotated[
        str, typer.Option(envvar="READER_AGENT_HOST", help="Loopback address to listen on")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="READER_AGENT_PORT", min=1, max=65535, help="Port")
    ] = 8100,
    reader: Annotated[
        str | None,
        typer.Option(envvar="READER_AGENT_READER", help="Reader name (default: any with a card)"),
    ] = None,
    sync_every: Annotated[
        float, typer.Option(min=0.5, help="Seconds between issuer probes and syncs")
    ] = 5.0,
    timeout: TimeoutOpt = 10.0,
    terminal_name: Annotated[
        str,
        typer.Option(envvar="READER_AGENT_TERMINAL_NAME",
                     help="This terminal's name on the page and receipts, as registered at "
                     "the issuer (default: 'this counter' in the page's language)"),
    ] = "",
    clerk_required: Annotated[
        bool, typer.Option(help="Collections and payments need a clerk signed in")
    ] = True,
    hall_name: Annotated[
        str, typer.Option(envvar="READER_AGENT_HALL_NAME", help="Service hall, on receipts")
    ] = "",
    hall_address: Annotated[
        str, typer.Option(envvar="READER_AGENT_HALL_ADDRESS", help="Its address, on receipts")
    ] = "",
) -> None:
    """The counter page for the clerk at http://HOST:PORT (loopback only): live card state,
    the genuine-card check, PIN, benefit collection, fee payment, receipts, QR codes.
    The page is in Simplified Chinese unless the browser asks for English."""
    from reader_agent.page.app import PageConfig, create_app
    from reader_agent.page.desk import DeskSettings
    from reader_agent.page.security import require_loopback
    from reader_agent.page.server import PageServer
    from reader_agent.page.views import Hall

    require_loopback(host)
    client = _issuer_client(issuer, client_id, client_key)
    config = PageConfig(
        state_dir=state_dir, cache_dir=cache_dir, port=port, probe_every=sync_every,
        desk=DeskSettings(reader=reader, card_timeout=timeout,
                          hall=Hall(name=hall_name.strip(), address=hall_address.strip())),
        terminal_name=terminal_name.strip()[:64],
        require_clerk=clerk_required,
    )  # fmt: skip
    typer.echo(f"counter page on http://{host}:{port}/ (terminal {client_id}); Ctrl-C stops it")
    PageServer(create_app(config, issuer=client), host=host, port=port).run()


@clerk_app.command("add")
def clerk_add(
    client_id: Annotated[str, typer.Option(help="The clerk's operator client id (role clerk)")],
    name: Annotated[str, typer.Option(help="The clerk's name, as printed on receipts")],
    key_file: Annotated[
        Path, typer.Option(help="The clerk's private key (PEM) from the registration")
    ],
    state_dir: StateDir = _DEFAULT_STATE,
) -> None:
    """Enrol a clerk at this counter: the key is sealed under the clerk's own password
    (asked twice, never echoed); delete the unsealed key file afterwards."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from reader_agent.clerks import ClerkStore

    try:
        private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise typer.BadParameter(f"cannot load the clerk's key {key_file}: {exc}") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise typer.BadParameter(f"{key_file} is not an EC P-256 private key")
    password = typer.prompt("The clerk's password", hide_input=True,
                            confirmation_prompt=True)  # fmt: skip
    ClerkStore(state_dir).enrol(client_id=client_id, display_name=name, private_key=private,
                                password=password)  # fmt: skip
    typer.echo(f"clerk {client_id} ({name.strip()}) enrolled; the key is sealed under the "
               f"clerk's password. Delete {key_file} now.")  # fmt: skip


@clerk_app.command("list")
def clerk_list(state_dir: StateDir = _DEFAULT_STATE) -> None:
    """The clerks enrolled at this counter."""
    from reader_agent.clerks import ClerkStore

    for client_id, display in ClerkStore(state_dir).names().items():
        typer.echo(f"{client_id:20} {display}")


def _issuer_client(issuer: str, client_id: str, client_key: Path) -> IssuerClient:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from cardsvc.core.signing import LocalSigner
    from reader_agent.issuer import IssuerClient

    try:
        private = serialization.load_pem_private_key(client_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise typer.BadParameter(f"cannot load terminal key {client_key}: {exc}") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise typer.BadParameter(f"{client_key} is not an EC P-256 private key")
    return IssuerClient(issuer, client_id=client_id, signer=LocalSigner(private))


def main() -> None:
    """Console entry point: typed errors become one line on stderr and exit status 1."""
    from cardsvc.core.errors import CoreError

    try:
        app()
    except (AgentError, CoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None

