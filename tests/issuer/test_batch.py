"""Batch issuance: many persons and cards at once, a report of rejects, idempotent reruns."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

from sqlalchemy import func, select

from cardsvc.db.models import Card, CardEvent, Person
from cardsvc.registry.batch import BatchIssuer, read_rows
from cardsvc.services import Services, utcnow
from tests.issuer.registry_helpers import services, unique_citizen_id
from tests.issuer.test_cli import CARDSVC, env_for

__all__ = ["services"]


def csv_text(rows: list[list[str]], header: str = "citizen_id,name,sex,region_code") -> str:
    out = io.StringIO()
    out.write(header + "\n")
    csv.writer(out).writerows(rows)
    return out.getvalue()


def counts(services: Services) -> tuple[int, int, int]:
    with services.engine.connect() as conn:
        return (
            conn.scalar(select(func.count()).select_from(Person)) or 0,
            conn.scalar(select(func.count()).select_from(Card)) or 0,
            conn.scalar(select(func.count()).select_from(CardEvent)) or 0,
        )


def test_batch_issues_reports_rejects_and_is_idempotent(services: Services) -> None:
    good = [unique_citizen_id() for _ in range(30)]
    rows = [[cid, f"人{i}", "", ""] for i, cid in enumerate(good)]
    dup = good[3]
    wrong_sex = unique_citizen_id()
    rows += [
        ["110101199003074478", "bad check", "", ""],
        [dup, "again", "", ""],
        ["", "no id", "", ""],
        [unique_citizen_id(), " padded", "", ""],
        [wrong_sex, "sex", "F" if int(wrong_sex[16]) % 2 else "M", ""],
        [unique_citizen_id(), "region", "", "999999"],
    ]
    text = csv_text(rows)
    issuer = BatchIssuer(services.engine, services.status, validity_years=10)
    done: list[int] = []
    report = issuer.run(
        read_rows(io.StringIO(text)),
        actor="batch:t",
        now=utcnow(),
        progress=done.append,
        chunk_size=7,
    )
    assert (report.rows, report.persons_enrolled, report.cards_issued) == (36, 30, 30)
    assert sum(done) == 30
    reasons = {r.row: r.reason for r in report.rejected}
    assert len(reasons) == 6
    assert "check character" in reasons[32]
    assert "same citizen ID number as row 5" in reasons[33]
    assert "does not match" in reasons[36]
    assert counts(services) == (30, 30, 30)

    # Idempotent: the same file again creates nothing, and reports the same rejects.
    again = issuer.run(read_rows(io.StringIO(text)), actor="batch:t", now=utcnow())
    assert (again.persons_enrolled, again.cards_issued, again.cards_existing) == (0, 0, 30)
    assert len(again.rejected) == 6
    assert counts(services) == (30, 30, 30)

    # Even after a card from the first run was revoked, a rerun does not issue it again.
    number = services.cards.list(after=None, limit=1)[0].card_number
    from cardsvc.registry.lifecycle import OperatorAction

    services.cards.change(number, OperatorAction.REVOKE, reason="t", actor="t", now=utcnow())
    issuer.run(read_rows(io.StringIO(text)), actor="batch:t", now=utcnow())
    assert counts(services)[1] == 30

    # Cards are pending personalization, with unique random status indexes.
    cards = services.cards.list(after=None, limit=100)
    assert {c.state for c in cards} <= {"pending_personalization", "revoked"}
    assert len({(c.status_shard, c.status_idx) for c in cards}) == 30


def test_existing_persons_with_other_names_or_cards_are_rejected(services: Services) -> None:
    issuer = BatchIssuer(services.engine, services.status, validity_years=10)
    cid = unique_citizen_id()
    issuer.run(read_rows(io.StringIO(csv_text([[cid, "甲", "", ""]]))), actor="a", now=utcnow())
    renamed = issuer.run(
        read_rows(io.StringIO(csv_text([[cid, "乙", "", ""]]))), actor="a", now=utcnow()
    )
    assert "different name" in renamed.rejected[0].reason


def test_cli_issue_batch(tmp_path: Path) -> None:
    assert (
        subprocess.run(
            [CARDSVC, "run", "--help"], env=env_for(tmp_path), capture_output=True, check=False
        ).returncode
        == 0
    )
    env = env_for(tmp_path, CARDSVC_DEV_MODE="1")
    for args in (["keys", "init"], ["db", "upgrade"]):
        done = subprocess.run(
            [CARDSVC, *args], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
    path = tmp_path / "persons.csv"
    path.write_text(
        csv_text(
            [[unique_citizen_id(), f"p{i}", "", ""] for i in range(50)] + [["123", "bad", "", ""]]
        )
    )
    first = subprocess.run(
        [CARDSVC, "issue-batch", str(path)], env=env, capture_output=True, text=True, check=False
    )
    assert first.returncode == 0, first.stderr
    assert "cards issued 50" in first.stdout and "rejected 1" in first.stdout
    report = (tmp_path / "persons.csv.rejected.csv").read_text()
    assert "must be 18 characters" in report
    second = subprocess.run(
        [CARDSVC, "issue-batch", str(path)], env=env, capture_output=True, text=True, check=False
    )
    assert "cards issued 0, already issued 50" in second.stdout
    sweep = subprocess.run(
        [CARDSVC, "lifecycle", "sweep"], env=env, capture_output=True, text=True, check=False
    )
    assert sweep.returncode == 0 and "lapsed 0" in sweep.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\n1,2\n")
    refused = subprocess.run(
        [CARDSVC, "issue-batch", str(bad)], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1 and "header must name" in refused.stderr
    assert "Traceback" not in refused.stderr
