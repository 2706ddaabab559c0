"""The benefit ledger: entitlements once per (person, benefit, period), CSV import,
death stops later periods."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import (
    AUDITOR,
    assert_problem,
    bearer,
    client,
    enrol,
    services,
)
from tests.issuer.transaction_helpers import ADMIN, new_entitlement

__all__ = ["client", "services"]


def test_create_list_and_refuse_a_second_for_the_same_period(
    client: TestClient, services: Services
) -> None:
    person = enrol(client, services)
    first = new_entitlement(client, services, person["id"], period="2025-01")
    assert (first["state"], first["amount_fen"], first["currency"]) == ("open", 350_000, "CNY")
    again = client.post(
        f"/v1/persons/{person['id']}/entitlements",
        json={"benefit": "pension", "period": "2025-01", "amount_fen": 1},
        headers=bearer(services, ADMIN),
    )
    assert assert_problem(again, 409)["existing_entitlement_id"] == first["id"]
    new_entitlement(client, services, person["id"], period="2025-02")
    listed = client.get(
        f"/v1/persons/{person['id']}/entitlements", headers=bearer(services, AUDITOR)
    )
    assert [e["period"] for e in listed.json()["items"]] != []
    assert sorted(e["period"] for e in listed.json()["items"]) == ["2025-01", "2025-02"]


def test_scopes_and_bad_input(client: TestClient, services: Services) -> None:
    person = enrol(client, services)
    path = f"/v1/persons/{person['id']}/entitlements"
    body = {"benefit": "pension", "period": "2025-01", "amount_fen": 100}
    assert_problem(client.post(path, json=body, headers=bearer(services)), 403)  # a clerk
    for bad in ({"period": "2025-13"}, {"benefit": "Pension!"}, {"amount_fen": 0},
                {"amount_fen": 1.5}):  # fmt: skip
        assert_problem(client.post(path, json=body | bad, headers=bearer(services, ADMIN)), 422)
    missing = "/v1/persons/00000000-0000-0000-0000-000000000000/entitlements"
    assert_problem(client.post(missing, json=body, headers=bearer(services, ADMIN)), 404)


def test_death_stops_entitlements_after_the_month_of_death(
    client: TestClient, services: Services
) -> None:
    person = enrol(client, services)
    for period in ("2025-01", "2025-02", "2025-03"):
        new_entitlement(client, services, person["id"], period=period)
    died = client.post(
        f"/v1/persons/{person['id']}/death",
        json={"died_on": "2025-02-10", "reason": "death certificate 123"},
        headers=bearer(services),
    )
    assert died.status_code == 200, died.json()
    states = {
        e["period"]: (e["state"], e["stopped_reason"])
        for e in client.get(
            f"/v1/persons/{person['id']}/entitlements", headers=bearer(services)
        ).json()["items"]
    }
    assert states == {
        "2025-01": ("open", None),
        "2025-02": ("open", None),  # the month of death is still owed
        "2025-03": ("stopped", "holder deceased"),
    }
    later = client.post(
        f"/v1/persons/{person['id']}/entitlements",
        json={"benefit": "pension", "period": "2025-04", "amount_fen": 100},
        headers=bearer(services, ADMIN),
    )
    assert assert_problem(later, 409)["type"].endswith("holder-deceased")


def test_csv_import_rejects_bad_rows_and_is_idempotent(
    client: TestClient, services: Services, tmp_path: Path
) -> None:
    person = enrol(client, services)
    csv_file = tmp_path / "entitlements.csv"
    csv_file.write_text(
        "citizen_id,benefit,period,amount_fen\n"
        f"{person['citizen_id']},pension,2025-01,350000\n"
        f"{person['citizen_id']},pension,2025-02,350000\n"
        f"{person['citizen_id']},pension,2025-02,350000\n"  # duplicate row in the file
        "110101199003074478,pension,2025-01,1\n"  # invalid check character
        f"{person['citizen_id']},pension,2025-03,12.5\n"
        f"{person['citizen_id']},pension,2025-02,999\n",  # another amount, same period
        encoding="utf-8",
    )
    result = services.ledger.import_csv(csv_file, actor="import", now=utcnow())
    assert (result.created, result.unchanged) == (2, 1)
    assert [line for line, _ in result.rejected] == [5, 6, 7]
    again = services.ledger.import_csv(csv_file, actor="import", now=utcnow())
    assert (again.created, again.unchanged, len(again.rejected)) == (0, 3, 3)


def test_cli_import(client: TestClient, services: Services, tmp_path: Path) -> None:
    from cardsvc.cli.main import app

    person = enrol(client, services)
    csv_file = tmp_path / "e.csv"
    csv_file.write_text(
        f"citizen_id,benefit,period,amount_fen\n{person['citizen_id']},pension,2025-01,5\n"
        "bad,pension,2025-01,5\n",
        encoding="utf-8",
    )
    settings = services.settings
    env = {
        "CARDSVC_DATABASE_URL": settings.database_url,
        "CARDSVC_KEY_DIR": str(settings.key_dir),
        "CARDSVC_KEY_PASSPHRASE": "test passphrase",
        "CARDSVC_ISSUER": settings.issuer,
    }
    done = CliRunner().invoke(app, ["entitlements", "import", str(csv_file)], env=env)
    assert done.exit_code == 1, done.output
    assert "created 1, unchanged 0, rejected 1" in done.output
    assert (tmp_path / "e.csv.rejected.csv").read_text(encoding="utf-8").count("\n") == 2
