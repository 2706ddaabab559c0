"""Where each table goes when one PostgreSQL primary is outgrown (Citus; docs/scaling.md).

Every table of :class:`cardsvc.db.models.Base` is declared here, once:

- :class:`Distributed`: sharded by the person it belongs to (``persons.id``, carried as
  ``person_id`` by every per-person table), so one person's card, events, e-cards,
  entitlements and transactions live on one worker and the hot queries (a person, their
  card, their transactions) go to one shard. A unique constraint that does not hold the
  distribution column cannot be enforced by Citus across shards: each one is named in
  ``global_unique`` with how it stays unique once distributed (docs/scaling.md).
- :class:`Reference`: small, read everywhere, written rarely: copied to every worker.
- :class:`Coordinator`: one global order that cannot be split by person (the audit
  log's single Merkle tree, terminals' journals keyed by terminal): kept on the
  coordinator as local tables, written in their own short transactions.

``tests/issuer/test_distribution.py`` holds the schema to this: a new table, or a new
unique constraint on a distributed table, fails it until it is declared here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: The distribution column of every per-person table (``id`` in ``persons`` itself).
PERSON_KEY = "person_id"


@dataclass(frozen=True, kw_only=True)
class Distributed:
    """Sharded by ``column`` (the person), colocated with ``persons``."""

    column: str = PERSON_KEY
    #: Unique constraints (by name) without the distribution column, and how each stays
    #: unique when distributed.
    global_unique: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Reference:
    """Replicated to every worker (small, rarely written)."""

    why: str


@dataclass(frozen=True, kw_only=True)
class Coordinator:
    """A local table on the coordinator (a global order no person key can split)."""

    why: str


Placement = Distributed | Reference | Coordinator

_LOOKUP = "a lookup table distributed by this key (key -> person_id), written in the same "
_LOOKUP += "transaction"

DISTRIBUTION: Mapping[str, Placement] = MappingProxyType(
    {
        "persons": Distributed(
            column="id",
            global_unique={"uq_persons_citizen_id": _LOOKUP + " (citizen_id)"},
        ),
        "person_changes": Distributed(
            global_unique={"person_changes_pkey": "a sequence (bigint ids are globally unique)"}
        ),
        "cards": Distributed(
            global_unique={
                "cards_pkey": "random UUIDs; lookups by id carry the person (routing)",
                "uq_cards_card_number": _LOOKUP + " (card_number)",
                "uq_cards_status_index": "allocated by one allocator per shard range: "
                "status shards are assigned to workers, so (shard, idx) is local",
                "uq_cards_chip_kid": _LOOKUP + " (chip_kid)",
                "uq_cards_request_key": "derived from the citizen ID number: unique "
                "through persons' lookup",
            }
        ),
        "card_events": Distributed(
            global_unique={"card_events_pkey": "a sequence (bigint ids are globally unique)"}
        ),
        "ecards": Distributed(
            global_unique={
                "ecards_pkey": "random UUIDs",
                "uq_ecards_ref": _LOOKUP + " (ref: the QR token names it)",
                "uq_ecards_status_index": "as cards' status index",
            }
        ),
        "ecard_activation_codes": Distributed(
            global_unique={"ecard_activation_codes_pkey": "random UUIDs"}
        ),
        "entitlements": Distributed(global_unique={"entitlements_pkey": "random UUIDs"}),
        "transactions": Distributed(
            global_unique={
                "transactions_pkey": "random UUIDs",
                "uq_transactions_terminal_seq": "terminal_journals (coordinator) "
                "serialises each terminal's sequence numbers",
                "uq_transactions_card_counter": "a card belongs to one person: the "
                "counter check runs on the card's shard (add person_id to the index)",
                "uq_transactions_entitlement": "an entitlement belongs to one person: "
                "checked on its shard (add person_id to the index)",
            }
        ),
        "status_shards": Reference(why="one row per 524,288 entries; read by every worker"),
        "clients": Reference(why="operators, terminals, partners: read on every request"),
        "partners": Reference(why="partner policies: read on every verify"),
        "service_meta": Reference(why="the installation's facts"),
        "verifier_bundles": Reference(why="bundle versions: one row per publication"),
        "verifier_bundle_shards": Reference(why="one status list per changed shard version"),
        "audit_state": Coordinator(why="the log's size: the one lock that orders every leaf"),
        "audit_leaves": Coordinator(why="one Merkle tree in one global order"),
        "audit_nodes": Coordinator(why="the tree's subtree hashes"),
        "audit_checkpoints": Coordinator(why="signed roots of the one tree"),
        "transaction_challenges": Coordinator(why="nonces by terminal, minutes long"),
        "idempotency_records": Coordinator(why="keyed by client, not by person"),
        "terminal_voids": Coordinator(why="a terminal's journal, across persons"),
        "terminal_journals": Coordinator(why="a terminal's journal, across persons"),
        "transaction_holds": Coordinator(why="forks held for review, by terminal"),
        "conflict_reviews": Coordinator(why="reviews name transactions or holds"),
    }
)
