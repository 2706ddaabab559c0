"""``python -m demo.personalize``: personalise a card signed by a local key store.

Development only. A real counter personalises through the issuer (``reader-agent
personalize --client-id ... --client-key ...``): the issuer signs the card document. This
command builds the document from its options and signs it with a cardsvc key store on
this machine, so the counter agent itself never imports the issuer's key store.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric import ec

from cardsvc.core.carddoc import CardDocument
from cardsvc.core.errors import CoreError
from cardsvc.core.identity import CardNumber, CitizenId, RegionCode
from cardsvc.core.keys import KeyPurpose, VerifyingKey
from cardsvc.core.references import StatusReference
from cardsvc.errors import CardsvcError
from cardsvc.keystore.files import FileKeyBackend
from cardsvc.keystore.service import KeyPolicy, KeyService
from cardsvc.settings import Settings
from reader_agent import pcsc
from reader_agent.card.session import SscSession
from reader_agent.errors import AgentError
from reader_agent.personalize import CardDocumentSigner, local_document_signer, personalize

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    key_dir: Annotated[Path, typer.Option(help="The local cardsvc key store that signs")],
    card_number: Annotated[str, typer.Option(help="9-character card number")],
    citizen_id: Annotated[str, typer.Option(help="Citizen ID number")],
    name: Annotated[str, typer.Option(help="Cardholder name")],
    status_uri: Annotated[str, typer.Option(help="Status list URI")],
    status_idx: Annotated[int, typer.Option(min=0, help="Status index")] = 0,
    issuer: Annotated[str, typer.Option(help="Issuer identifier")] = "http://127.0.0.1:8000",
    region: Annotated[str | None, typer.Option(help="Region (default: the ID's)")] = None,
    issue_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: today)")] = None,
    valid_years: Annotated[int, typer.Option(min=1, max=30)] = 10,
    reader: Annotated[str, typer.Option(help="Reader name")] = "Virtual PCD 00 00",
    timeout: Annotated[float, typer.Option(help="Deadline of every PC/SC operation (s)")] = 10.0,
) -> None:
    """Personalise a blank card: key on card -> document signed here -> PIN/PUK -> lock."""
    try:
        sign_document = _local_signer(
            key_dir, issuer, card_number, citizen_id, name, status_uri, status_idx,
            region, issue_date, valid_years,
        )  # fmt: skip
        pin = typer.prompt("initial PIN", hide_input=True, confirmation_prompt=True)
        puk = typer.prompt("PUK", hide_input=True, confirmation_prompt=True)
        with pcsc.connect(reader, timeout=timeout) as connection:
            result = personalize(
                SscSession(connection), sign_document=sign_document, pin=pin, puk=puk
            )
    except (AgentError, CoreError, CardsvcError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"card {card_number} personalised and locked; chip key {result.chip_key.kid}")


def _local_signer(
    key_dir: Path, issuer: str, card_number: str, citizen_id: str, name: str,
    status_uri: str, status_idx: int, region: str | None, issue_date: str | None,
    valid_years: int,
) -> CardDocumentSigner:  # fmt: skip
    now = datetime.now(UTC)
    try:
        cid = CitizenId.parse(citizen_id)
        issued = date.fromisoformat(issue_date) if issue_date else now.date()
        template = CardDocument(
            issuer=issuer,
            card_number=CardNumber.parse(card_number),
            citizen_id=cid,
            name=name,
            sex=cid.sex,
            birth_date=cid.birth_date,
            region=RegionCode.parse(region) if region else cid.region_code,
            issue_date=issued,
            expiry_date=issued.replace(year=issued.year + valid_years),
            # A throwaway key for the template: personalisation puts the chip's in its place.
            chip_key=VerifyingKey(public_key=ec.generate_private_key(ec.SECP256R1()).public_key()),
            status=StatusReference(idx=status_idx, uri=status_uri),
            issued_at=now,
        )
    except (CoreError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    passphrase = Settings(key_dir=key_dir).passphrase()
    keys = KeyService(FileKeyBackend(key_dir, passphrase), KeyPolicy(), issuer=issuer)
    return local_document_signer(template, keys.signer(KeyPurpose.CARD_DOCUMENT, now=now))


if __name__ == "__main__":
    app()
