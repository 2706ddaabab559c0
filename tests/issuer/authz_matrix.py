"""Who may call what: every operation of the OpenAPI document against every caller.

The one place this is written down. ``test_authz_matrix.py`` sends a real request for
every (operation, caller) pair and checks the answer; the README's "Who may call what"
table is rendered from this data (``render_table``) and checked against it.

Callers: the three operator roles, a counter terminal, a partner, an e-card holder's
device proof (``DPoP``, no bearer token), no credential at all, a clerk whose client was
suspended after its token was issued, and a clerk's expired token.

Answers:

- ``2xx``: succeeds (exactly a 2xx answer);
- ``ok``: passes authorization (neither 401 nor 403); used where a success would need a
  body that changes the world the other rows read (a death, a status change) or that
  names objects the world does not hold, so the request carries a body the operation
  refuses after authorization (``{}``: 422) or names an unknown object (404);
- ``403``: refused for lack of a scope, or for the caller's address (``/metrics``)
  (problem+json);
- ``401``: not authenticated: no credential, an expired token, a suspended client, or
  the wrong kind of credential (a bearer token on an e-card's own routes, a device
  proof on a bearer route).

Bearer tokens and device proofs are ignored by public operations, so every caller gets
their answer there. The token endpoint authenticates clients by the assertion in its
body (tests/issuer/test_token.py); here it only shows that no bearer token is asked for.
"""

from __future__ import annotations

CALLERS = (
    "admin",
    "clerk",
    "auditor",
    "terminal",
    "partner",
    "holder",
    "none",
    "suspended",
    "expired",
)

_PUBLIC = ("2xx",) * 9
_PUBLIC_OK = ("ok",) * 9
#: An e-card's own routes: only its device proof.
_HOLDER = ("401", "401", "401", "401", "401", "2xx", "401", "401", "401")


def _row(admin: str, clerk: str, auditor: str, terminal: str, partner: str) -> tuple[str, ...]:
    """A bearer-token operation: the five token holders' answers; the device proof, no
    credential, a suspended client and an expired token all get 401."""
    return (admin, clerk, auditor, terminal, partner, "401", "401", "401", "401")


#: (method, OpenAPI path) -> one answer per caller, in the order of CALLERS.
MATRIX: dict[tuple[str, str], tuple[str, ...]] = {
    # Public: health, keys, audit checkpoint, status lists, bundles, e-card activation.
    ("GET", "/health"): _PUBLIC,
    ("GET", "/health/live"): _PUBLIC,
    ("GET", "/health/ready"): _PUBLIC,
    # Metrics: by source address only (CARDSVC_METRICS_ALLOW, loopback by default); the
    # test client's address is none of them, so every caller is refused, credentials or
    # not (tests/issuer/test_metrics.py reads them from an allowed address).
    ("GET", "/metrics"): ("403",) * 9,
    ("GET", "/.well-known/jwks.json"): _PUBLIC,
    ("GET", "/v1/trust-list"): _PUBLIC,
    ("GET", "/v1/audit/checkpoint"): _PUBLIC,
    ("GET", "/v1/status-lists"): _PUBLIC,
    ("GET", "/v1/status-lists/{shard}"): _PUBLIC,
    ("GET", "/v1/bundles/latest"): _PUBLIC,
    ("GET", "/v1/ecards/nonce"): _PUBLIC,
    ("POST", "/v1/ecards/activations"): _PUBLIC_OK,
    ("POST", "/v1/oauth/token"): _PUBLIC_OK,
    # A receipt's verification code: public, nothing personal (an unknown code: 404).
    ("GET", "/v1/receipts/{code}"): _PUBLIC_OK,
    # Audit proofs: audit:read.
    ("GET", "/v1/audit/proofs/inclusion"): _row("ok", "403", "ok", "403", "403"),
    ("GET", "/v1/audit/proofs/consistency"): _row("ok", "403", "ok", "403", "403"),
    # Persons: persons:read / persons:write.
    ("POST", "/v1/persons"): _row("ok", "ok", "403", "403", "403"),
    ("GET", "/v1/persons"): _row("2xx", "2xx", "2xx", "403", "403"),
    ("POST", "/v1/persons/lookup"): _row("ok", "ok", "ok", "403", "403"),
    ("GET", "/v1/persons/{person_id}"): _row("2xx", "2xx", "2xx", "403", "403"),
    ("POST", "/v1/persons/{person_id}/name-corrections"): _row("ok", "ok", "403", "403", "403"),
    ("GET", "/v1/persons/{person_id}/changes"): _row("2xx", "2xx", "2xx", "403", "403"),
    ("POST", "/v1/persons/{person_id}/death"): _row("ok", "ok", "403", "403", "403"),
    # Cards: cards:read / cards:write; the chip's personalization: cards:personalize.
    ("POST", "/v1/persons/{person_id}/cards"): _row("ok", "ok", "403", "403", "403"),
    ("GET", "/v1/persons/{person_id}/cards"): _row("2xx", "2xx", "2xx", "403", "403"),
    ("GET", "/v1/cards"): _row("2xx", "2xx", "2xx", "403", "403"),
    ("GET", "/v1/cards/{card_number}"): _row("2xx", "2xx", "2xx", "403", "403"),
    ("GET", "/v1/cards/{card_number}/events"): _row("2xx", "2xx", "2xx", "403", "403"),
    ("POST", "/v1/cards/{card_number}/status-changes"): _row("ok", "ok", "403", "403", "403"),
    ("POST", "/v1/cards/{card_number}/reissue"): _row("ok", "ok", "403", "403", "403"),
    ("POST", "/v1/cards/{card_number}/personalization"): _row("ok", "ok", "403", "ok", "403"),
    ("GET", "/v1/cards/{card_number}/document"): _row("2xx", "2xx", "403", "2xx", "403"),
    # E-cards: codes (cards:write), counter activation (cards:personalize), verify.
    # A person's e-cards: cards:read (the counter's look-up), not terminals or partners.
    ("GET", "/v1/persons/{person_id}/ecards"): _row("2xx", "2xx", "2xx", "403", "403"),
    ("POST", "/v1/persons/{person_id}/ecard-activation-codes"): _row(
        "ok", "ok", "403", "403", "403"
    ),
    ("POST", "/v1/ecards/counter-challenges"): _row("ok", "ok", "403", "ok", "403"),
    ("POST", "/v1/ecards/counter-activations"): _row("ok", "ok", "403", "ok", "403"),
    ("POST", "/v1/verify"): _row("ok", "403", "403", "ok", "ok"),
    # The holder's own e-card, by its device proof only.
    ("GET", "/v1/ecards/device-binding"): _HOLDER,
    ("GET", "/v1/ecards/{ecard_id}"): _HOLDER,
    ("POST", "/v1/ecards/{ecard_id}/tokens"): _HOLDER,
    ("POST", "/v1/ecards/{ecard_id}/offline-credentials"): _HOLDER,
    ("POST", "/v1/ecards/{ecard_id}/loss-report"): _HOLDER,
    ("GET", "/v1/ecards/{ecard_id}/transactions"): _HOLDER,
    ("GET", "/v1/ecards/{ecard_id}/entitlements"): _HOLDER,
    # Entitlements: entitlements:read / entitlements:write; paying out: transactions:write.
    ("POST", "/v1/persons/{person_id}/entitlements"): _row("ok", "403", "403", "403", "403"),
    ("GET", "/v1/persons/{person_id}/entitlements"): _row("2xx", "2xx", "2xx", "403", "403"),
    ("GET", "/v1/cards/{card_number}/open-entitlements"): _row("2xx", "403", "403", "2xx", "403"),
    # Transactions: terminals write, operators read, auditors review conflicts.
    ("GET", "/v1/transactions/conflicts"): _row("2xx", "403", "2xx", "403", "403"),
    ("GET", "/v1/transactions/conflicts/{ref}"): _row("ok", "403", "ok", "403", "403"),
    ("POST", "/v1/transactions/conflicts/{ref}/resolution"): _row("ok", "403", "ok", "403", "403"),
    ("POST", "/v1/terminal-certificates"): _row("ok", "403", "403", "2xx", "403"),
    ("POST", "/v1/transactions/challenges"): _row("2xx", "403", "403", "2xx", "403"),
    ("POST", "/v1/transactions"): _row("ok", "403", "403", "ok", "403"),
    ("GET", "/v1/persons/{person_id}/transactions"): _row("2xx", "2xx", "2xx", "403", "403"),
    ("POST", "/v1/transactions/batches"): _row("ok", "403", "403", "ok", "403"),
}


def render_table() -> str:
    """The README's table: one row per operation, one column per caller."""
    lines = [
        "| operation | " + " | ".join(CALLERS) + " |",
        "|---|" + "---|" * len(CALLERS),
    ]
    for (method, path), answers in MATRIX.items():
        lines.append(f"| `{method} {path}` | " + " | ".join(answers) + " |")
    return "\n".join(lines) + "\n"
