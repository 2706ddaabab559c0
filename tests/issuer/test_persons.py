"""Persons over HTTP: enrol, duplicates, look-up, recorded name corrections, death."""

from __future__ import annotations

from fastapi.testclient import TestClient

from cardsvc.services import Services
from tests.issuer.registry_helpers import (
    AUDITOR,
    assert_problem,
    bearer,
    client,
    enrol,
    issue,
    personalize,
    services,
    unique_citizen_id,
)

__all__ = ["client", "services"]


def test_enrol_derives_sex_and_birth_date_and_looks_up_by_id(
    client: TestClient, services: Services
) -> None:
    cid = unique_citizen_id()
    person = enrol(client, services, citizen_id=cid, name="李四", region_code="310101")
    assert person["citizen_id"] == cid
    assert person["sex"] == ("M" if int(cid[16]) % 2 else "F")
    assert person["birth_date"] == f"{cid[6:10]}-{cid[10:12]}-{cid[12:14]}"
    assert person["region_code"] == "310101"
    assert person["created_by"] == "clerk-1"
    found = client.post("/v1/persons/lookup", json={"citizen_id": cid}, headers=bearer(services))
    assert found.status_code == 200 and found.json()["id"] == person["id"]
    by_id = client.get(f"/v1/persons/{person['id']}", headers=bearer(services, AUDITOR))
    assert by_id.json() == found.json()


def test_duplicate_enrolment_names_the_existing_person(
    client: TestClient, services: Services
) -> None:
    person = enrol(client, services)
    again = client.post(
        "/v1/persons",
        json={"citizen_id": person["citizen_id"].lower(), "name": "Someone Else"},
        headers=bearer(services),
    )
    body = assert_problem(again, 409)
    assert body["existing_person_id"] == person["id"]
    assert body["existing"] == f"/v1/persons/{person['id']}"


def test_invalid_input_is_422_naming_the_problem(client: TestClient, services: Services) -> None:
    headers = bearer(services)
    bad_check = client.post(
        "/v1/persons", json={"citizen_id": "110101199003074478", "name": "A"}, headers=headers
    )
    assert "check character" in assert_problem(bad_check, 422)["detail"]
    cid = unique_citizen_id()
    wrong_sex = "F" if int(cid[16]) % 2 else "M"
    mismatch = client.post(
        "/v1/persons", json={"citizen_id": cid, "name": "A", "sex": wrong_sex}, headers=headers
    )
    assert "does not match" in assert_problem(mismatch, 422)["detail"]
    for name in (" padded", "a\x00b", "x" * 65):
        response = client.post(
            "/v1/persons", json={"citizen_id": unique_citizen_id(), "name": name}, headers=headers
        )
        assert_problem(response, 422)
    unknown = client.post(
        "/v1/persons",
        json={"citizen_id": unique_citizen_id(), "name": "A", "admin": True},
        headers=headers,
    )
    assert_problem(unknown, 422)
    missing = client.post(
        "/v1/persons/lookup", json={"citizen_id": unique_citizen_id()}, headers=headers
    )
    assert_problem(missing, 404)


def test_name_correction_is_recorded(client: TestClient, services: Services) -> None:
    person = enrol(client, services, name="王五")
    response = client.post(
        f"/v1/persons/{person['id']}/name-corrections",
        json={"name": "王伍", "reason": "typo at enrolment, checked against ID card"},
        headers=bearer(services, subject="clerk-7"),
    )
    assert response.status_code == 200 and response.json()["name"] == "王伍"
    changes = client.get(f"/v1/persons/{person['id']}/changes", headers=bearer(services)).json()
    (change,) = changes["items"]
    assert (change["field"], change["old_value"], change["new_value"]) == ("name", "王五", "王伍")
    assert change["actor"] == "clerk-7" and change["reason"].startswith("typo")
    assert change["at"].endswith("Z")
    same = client.post(
        f"/v1/persons/{person['id']}/name-corrections",
        json={"name": "王伍", "reason": "again"},
        headers=bearer(services),
    )
    assert_problem(same, 422)


def test_list_persons_is_paginated(client: TestClient, services: Services) -> None:
    ids = {enrol(client, services)["id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/persons", params=params, headers=bearer(services)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert set(seen) == ids and len(seen) == len(ids)
    bad = client.get("/v1/persons", params={"cursor": "nonsense"}, headers=bearer(services))
    assert_problem(bad, 422)


def test_death_revokes_every_live_card_and_stops_new_ones(
    client: TestClient, services: Services
) -> None:
    person = enrol(client, services)
    card = issue(client, services, person["id"])
    personalize(client, services, card["card_number"])
    died = client.post(
        f"/v1/persons/{person['id']}/death",
        json={"died_on": "2025-01-02", "reason": "death certificate 123"},
        headers=bearer(services),
    )
    assert died.status_code == 200 and died.json()["deceased_on"] == "2025-01-02"
    after = client.get(f"/v1/cards/{card['card_number']}", headers=bearer(services)).json()
    assert (after["state"], after["revocation_reason"]) == ("revoked", "holder_deceased")
    again = client.post(f"/v1/persons/{person['id']}/cards", headers=bearer(services))
    assert_problem(again, 409)
    twice = client.post(
        f"/v1/persons/{person['id']}/death",
        json={"died_on": "2025-01-02", "reason": "again"},
        headers=bearer(services),
    )
    assert_problem(twice, 409)
