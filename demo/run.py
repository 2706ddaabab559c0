"""``./dev run``: the whole system on one machine, ready to try.

Starts, in order: the issuer's database and keys (as ``cardsvc run``), the demo person with
a card, a counter terminal and this month's pension (:mod:`demo.world`); pcscd and the
emulated card in the first vpcd reader, personalised through PC/SC on the first run; the
issuer's API with the wallet page; the reader agent's offline cache and its counter page.
Then it prints the addresses and three things to try. One Ctrl-C stops everything; a
second run finds the same person, card and keys.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import typer
import uvicorn

from cardsvc.api.app import create_app
from cardsvc.api.serving import server_config
from cardsvc.cli.clients import ensure_demo_admin
from cardsvc.core.keys import VerifyingKey
from cardsvc.db.migrate import upgrade
from cardsvc.errors import CardsvcError
from cardsvc.registry.lifecycle import CardState
from cardsvc.services import Services, utcnow
from cardsvc.settings import Settings
from demo.processes import READER, DemoError, Processes
from demo.world import (
    ACTOR,
    CLERK_NAME,
    PENSION_FEN,
    TERMINAL_NAME,
    DemoWorld,
    ensure_clerk,
    ensure_world,
)
from reader_agent import pcsc
from reader_agent.card.session import SscSession
from reader_agent.personalize import personalize
from wording import money

DEMO_DIR = Path("var/demo")
HALL_NAME = "演示区社会保障服务大厅"
HALL_ADDRESS = "演示市演示路 1 号"
PIN = "123456"  # the demo card's; a real card's PIN is the cardholder's secret
PUK = "12345678"
#: The demo clerk's password at the counter (a real clerk's is their own secret).
CLERK_PASSWORD = "limin-demo-2026"  # noqa: S105 - the demo's, printed in its banner
_BANNER_WIDTH = 72


class _DemoServer(uvicorn.Server):
    """Returns from ``run()`` on Ctrl-C or SIGTERM, so the demo stops what it started.

    uvicorn would raise the signal again after its shutdown, and SIGTERM's default action
    would end the process before the counter page and pcscd are stopped.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: do not wait for open connections
        self.should_exit = True


def _interrupt(sig: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Until the server runs (and again after), SIGTERM unwinds like Ctrl-C: cleanup runs.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        _run()
    except KeyboardInterrupt:
        typer.echo("demo stopped; ./dev run starts it again with the same data")


def _run() -> None:
    settings = Settings()
    if "issuer" not in settings.model_fields_set:
        settings = settings.model_copy(update={"issuer": f"http://{settings.host}:{settings.port}"})
    if "wallet_developer_aids" not in settings.model_fields_set:
        # The wallet's QR text, for a counter without a scanner (the banner's things to try).
        settings = settings.model_copy(update={"wallet_developer_aids": True})
    page_port = int(os.environ.get("READER_AGENT_PORT", "8100"))
    services = Services.from_settings(settings)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    upgrade(services.engine)  # first, so key creation is recorded in the audit log
    for record in services.keys.init(now=utcnow()):
        typer.echo(f"created {record.purpose.value} key {record.kid}")
    admin_id, admin_key = ensure_demo_admin(services)

    card_file = DEMO_DIR / "card.json"
    world = ensure_world(
        services,
        key_path=DEMO_DIR / "terminal.pem",
        fresh_card=not card_file.exists(),
        now=utcnow(),
    )
    if world.card.state == CardState.PENDING_PERSONALIZATION:
        card_file.unlink(missing_ok=True)  # a blank chip for the new card
    clerk_id = ensure_clerk(services, DEMO_DIR / "clerk.pem", now=utcnow())
    root_file = DEMO_DIR / "root.jwk"
    root_file.write_text(json.dumps(services.keys.root_key().jwk()))
    server = _DemoServer(
        server_config(
            create_app(settings, services=services),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            head_timeout=settings.head_timeout_seconds,
        )
    )
    with Processes(DEMO_DIR) as processes:
        try:
            processes.pcscd()
            processes.card(card_file)
            if world.card.state == CardState.PENDING_PERSONALIZATION:
                _personalise(services, world)
        except DemoError as exc:
            typer.echo(f"counter part not started: {exc}", err=True)
            page_port = 0
        code = _activation_code(services, world)

        def after_start() -> None:
            if not _wait_started(server):
                return
            try:
                if page_port:
                    _start_counter_page(processes, settings.issuer, world, root_file, page_port,
                                        clerk_id)  # fmt: skip
            except DemoError as exc:
                typer.echo(f"counter page not started: {exc}", err=True)
                _banner(settings.issuer, 0, world, code, admin_id, admin_key, clerk_id)
                return
            _banner(settings.issuer, page_port, world, code, admin_id, admin_key, clerk_id)

        threading.Thread(target=after_start, daemon=True).start()
        server.run()  # until Ctrl-C; then the processes stop in reverse order
    services.engine.dispose()
    typer.echo("demo stopped; ./dev run starts it again with the same data")


def _personalise(services: Services, world: DemoWorld) -> None:
    """Personalise the blank emulated chip through PC/SC: the issuer signs its document."""
    number = world.card.card_number

    def sign_document(chip_key: VerifyingKey) -> str:
        personalized = services.cards.personalize(number, chip_key.jwk(), actor=ACTOR, now=utcnow())
        return personalized.document

    # CARDSVC_SIGNING_ALGORITHM=SM2SM3 puts the demo on SM2: the chip's key too.
    chip_alg = services.settings.signing_algorithm
    with pcsc.connect(READER, timeout=10.0) as connection:
        personalize(
            SscSession(connection), sign_document=sign_document, pin=PIN, puk=PUK,
            chip_alg=chip_alg,
        )  # fmt: skip
    typer.echo(f"card {number} personalised on the emulated chip ({chip_alg}, PIN {PIN})")


def _activation_code(services: Services, world: DemoWorld) -> str:
    """A fresh one-time code for the wallet page (it needs the card personalised)."""
    try:
        return services.ecard_activation.issue_code(world.person_id, actor=ACTOR, now=utcnow()).code
    except CardsvcError as exc:
        return f"(none: {exc.detail})"


def _wait_started(server: uvicorn.Server) -> bool:
    for _ in range(400):
        if server.started:
            return True
        if server.should_exit:
            return False
        threading.Event().wait(0.05)
    return False


def _start_counter_page(
    processes: Processes, issuer: str, world: DemoWorld, root_file: Path, port: int,
    clerk_id: str,
) -> None:  # fmt: skip
    import subprocess

    cache_dir, state_dir = DEMO_DIR / "agent-cache", DEMO_DIR / "agent-state"
    _enrol_clerk(state_dir, clerk_id)
    update = subprocess.run(  # noqa: S603 - our own fixed command line
        [sys.executable, "-m", "reader_agent", "cache", "update", "--issuer", issuer,
         "--root", str(root_file), "--cache-dir", str(cache_dir)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    if update.returncode != 0:
        raise DemoError(f"reader-agent cache update failed: {update.stderr.strip()}")
    processes.counter_page(
        ["serve", "--issuer", issuer, "--client-id", world.terminal_id,
         "--client-key", str(world.terminal_key), "--state-dir", str(state_dir),
         "--cache-dir", str(cache_dir), "--port", str(port), "--reader", READER,
         "--terminal-name", TERMINAL_NAME, "--hall-name", HALL_NAME,
         "--hall-address", HALL_ADDRESS],
        port=port,
    )  # fmt: skip


def _enrol_clerk(state_dir: Path, clerk_id: str) -> None:
    """The demo clerk at the demo counter (as ``reader-agent clerk add`` does), under the
    password the banner prints; again on every run (a lock-out from the last run ends)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from reader_agent.clerks import ClerkStore

    private = serialization.load_pem_private_key((DEMO_DIR / "clerk.pem").read_bytes(), None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise DemoError("the demo clerk's key is not an EC key")
    ClerkStore(state_dir).enrol(client_id=clerk_id, display_name=CLERK_NAME,
                                private_key=private, password=CLERK_PASSWORD)  # fmt: skip


def _first_thing(world: DemoWorld, yuan: str) -> list[str]:
    if world.pension_open:
        return [
            f"  1. Counter page: sign in as the clerk, check the card, enter PIN {PIN}, "
            "collect the",
            f"     {world.entitlement_period} pension ({yuan}) and print the receipt.",
        ]
    return [
        f"  1. Counter page: sign in as the clerk, check the card, enter PIN {PIN} and pay a "
        "fee",
        f"     (the {world.entitlement_period} pension was collected on an earlier run), "
        "then print the receipt.",
    ]


def _banner(
    issuer: str, page_port: int, world: DemoWorld, code: str, admin_id: str, admin_key: Path,
    clerk_id: str,
) -> None:  # fmt: skip
    rule = "=" * _BANNER_WIDTH
    page = f"http://127.0.0.1:{page_port}" if page_port else "(not running: see above)"
    yuan = money(PENSION_FEN, "en")
    lines = [
        rule,
        "cardsvc demo is running (Ctrl-C stops everything)",
        f"  counter page  {page}",
        f"  wallet page   {issuer}/wallet",
        f"  scanner page  {issuer}/scan   (a camera reads the wallet's QR code, offline)",
        f"  API docs      {issuer}/docs",
        "The pages are in Simplified Chinese by default; the 中文 / English switch at the top",
        "(or a browser asking for English) shows them in English.",
        "",
        f"Demo person {world.name}, ID {world.citizen_id}, card {world.card.card_number} "
        f"in reader {READER!r}, PIN {PIN}.",
        f"Demo clerk {CLERK_NAME}: clerk ID {clerk_id}, password {CLERK_PASSWORD} "
        "(the clerk signs in first).",
        "",
        "Three things to try:",
        *_first_thing(world, yuan),
        f"  2. Wallet page: activate the e-card with ID {world.citizen_id} and code {code};",
        "     show it for Identity, open 'QR text' (二维码文本) under the code and paste the text",
        "     into the counter page's QR field: VALID, with what an identity check may see.",
        "  3. Copy the next QR text, report the card lost in the wallet (挂失, confirm), then",
        "     paste it at the counter: refused, the card is suspended (the e-card follows it).",
        "",
        "Admin API token (for /docs):",
        f"  .venv/bin/cardsvc clients token {admin_id} --key {admin_key} --url {issuer}",
        rule,
    ]
    typer.echo("\n".join(lines))
