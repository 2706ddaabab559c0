"""GET /metrics: who may read it, and the figures it gives after real requests."""

from __future__ import annotations

from ipaddress import IPv4Network

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cardsvc.api.app import create_app
from cardsvc.core.keys import KeyPurpose
from cardsvc.core.transaction import Kind
from cardsvc.services import Services
from tests.issuer.ecard_helpers import Phone, activate, active_holder, mint, verify
from tests.issuer.registry_helpers import assert_problem, bearer, client, services
from tests.issuer.test_transaction_batches import offline, upload
from tests.issuer.transaction_helpers import active_card, terminal

__all__ = ["client", "services"]

ADMIN = frozenset({"persons:read", "cards:read", "audit:read", "clients:admin"})


def scraper(services: Services, address: str = "127.0.0.1") -> TestClient:
    return TestClient(create_app(services.settings, services=services), client=(address, 40000))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(figures: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_only_to_allowed_addresses(services: Services) -> None:
    # An admin's token from another address: refused all the same.
    outside = scraper(services, "10.1.2.3")
    refused = outside.get("/metrics", headers=bearer(services, ADMIN))
    assert_problem(refused, 403)
    assert refused.json()["type"].endswith("/metrics-forbidden")
    assert "cardsvc_" not in refused.text
    # IPv6 loopback is allowed by default, and a configured network is.
    assert scraper(services, "::1").get("/metrics").status_code == 200
    services.settings = services.settings.model_copy(
        update={"metrics_allow": (IPv4Network("10.1.2.0/24"),)}
    )
    allowed = scraper(services, "10.1.2.3").get("/metrics")
    assert allowed.status_code == 200
    assert allowed.headers["content-type"].startswith("text/plain")
    assert scraper(services, "127.0.0.1").get("/metrics").status_code == 403


def test_requests_are_counted_by_route_template(services: Services) -> None:
    web = scraper(services)
    holder = active_holder(web, services)
    number = holder.card_number
    assert web.get(f"/v1/cards/{number}", headers=bearer(services)).status_code == 200
    assert web.get("/v1/cards/S00000000", headers=bearer(services)).status_code == 404
    assert web.get("/no/such/path/11010519491231002X").status_code == 404
    text = web.get("/metrics").text
    figures = samples(text)
    name = "cardsvc_http_request_duration_seconds_count"
    route = "/v1/cards/{card_number}"
    assert value(figures, name, method="GET", route=route, status="200") == 1
    assert value(figures, name, method="GET", route=route, status="404") == 1
    assert value(figures, name, method="GET", route="unmatched", status="404") == 1
    assert value(figures, name, method="POST", route="/v1/persons", status="201") == 1
    # No raw path, card number or ID number ever becomes a label.
    assert number not in text and "S00000000" not in text and "11010519491231002X" not in text


def test_verify_outcomes_and_tokens_minted(services: Services) -> None:
    for fast in (True, False):
        web = TestClient(
            create_app(services.settings, services=services, fast_verify=fast),
            client=("127.0.0.1", 40000),
        )
        holder = active_holder(web, services)
        phone = Phone()
        ecard = activate(web, services, holder, phone)
        token = mint(web, services, ecard["ecard_id"], phone, "transport").json()["tokens"][0]
        assert verify(web, services, token["token"]).status_code == 200
        assert verify(web, services, token["token"]).status_code == 422  # replayed
        assert verify(web, services, token["token"], "identity").status_code == 422
        offline_batch = mint(web, services, ecard["ecard_id"], phone, "identity", offline=True)
        assert offline_batch.status_code == 200
        batch = len(offline_batch.json()["tokens"])
    # Both paths count into the same figures (one Services, one Metrics).
    figures = samples(scraper(services).get("/metrics").text)
    outcomes = "cardsvc_verify_outcomes_total"
    assert value(figures, outcomes, outcome="valid", reason="valid") == 2
    assert value(figures, outcomes, outcome="refused", reason="replayed") == 2
    assert sum(
        v for (n, labels), v in figures.items()
        if n == outcomes and ("outcome", "refused") in labels
    ) == 4  # fmt: skip
    minted = "cardsvc_tokens_minted_total"
    assert value(figures, minted, kind="qr", purpose="transport") == 2
    assert batch > 1
    assert value(figures, minted, kind="qr", purpose="identity") == 2 * batch


def test_sync_backlog_conflicts_keys_and_pool(services: Services) -> None:
    web = scraper(services)
    card = active_card(web, services)
    t = terminal(web, services)
    upload(web, t, [offline(t, card, kind=Kind.FEE, amount=100,
                            reference="b2", seq=2)])  # fmt: skip
    fork = upload(web, t, [{"seq": 3, "void": "torn"}])
    assert fork["journal"]["gaps"] == [1]
    held = upload(web, t, [offline(t, card, kind=Kind.FEE, amount=5,
                                   reference="x", seq=3)])  # fmt: skip
    assert held["results"][0]["outcome"] == "conflict"
    figures = samples(web.get("/metrics").text)
    assert value(figures, "cardsvc_sync_batches_total") == 3
    assert value(figures, "cardsvc_sync_records_total", outcome="accepted") == 2
    assert value(figures, "cardsvc_sync_records_total", outcome="conflict") == 1
    # Terminal journal at contiguous 0, highest 3: three seqs ahead of the prefix.
    assert value(figures, "cardsvc_sync_journal_backlog") == 3
    assert value(figures, "cardsvc_sync_conflicts_open", kind="hold") == 1
    # Every key of the store, current ones never expiring until rotated.
    records = services.keys.records()
    expiry = {
        labels: v for (n, labels), v in figures.items() if n == "cardsvc_key_expiry_days"
    }
    assert len(expiry) == len(records)
    for record in records:
        labels = (("kid", record.kid), ("purpose", record.purpose.value), ("state", "current"))
        assert expiry[labels] == float("inf")
    assert value(figures, "cardsvc_db_pool_size") >= 1
    assert value(figures, "cardsvc_db_pool_checked_out") >= 0
    # A status list this process served, and the newest bundle: their ages.
    shard = web.get("/v1/status-lists").json()["items"][0]["shard"]
    assert web.get(f"/v1/status-lists/{shard}").status_code == 200
    assert web.get("/v1/bundles/latest").status_code == 200
    figures = samples(web.get("/metrics").text)
    age = value(figures, "cardsvc_status_list_age_seconds", shard=str(shard))
    assert ("cardsvc_status_list_age_seconds", (("shard", str(shard)),)) in figures
    assert 0 <= age < 60
    assert 0 <= value(figures, "cardsvc_bundle_age_seconds") < 60


def test_rotated_key_expiry_in_days(services: Services) -> None:
    rotated = services.keys.rotate(KeyPurpose.ECARD, now=services.clock())
    assert rotated.retired
    figures = samples(scraper(services).get("/metrics").text)
    for old in rotated.retired:
        assert old.verify_until is not None
        labels = (("kid", old.kid), ("purpose", old.purpose.value), ("state", "retired"))
        days = figures[("cardsvc_key_expiry_days", labels)]
        expected = (old.verify_until - services.clock()).total_seconds() / 86400
        assert abs(days - expected) < 0.01
