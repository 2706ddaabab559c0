"""Database sessions, the same on SQLite and PostgreSQL (every package may import this).

The audit log and the registry both open sessions here, so neither imports the other
for it. Write sessions are a :class:`WriteSession`, which the audit log guards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session


class WriteSession(Session):
    """The sessions :func:`write_session` makes; the audit log's flush guard
    (:mod:`cardsvc.audit.guard`) listens to this class."""


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any error.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock at
    once (waiting up to the busy timeout) instead of failing with "database is locked"
    when a read transaction later tries to write after another writer committed.
    """
    with WriteSession(engine, expire_on_commit=False) as session:
        if engine.dialect.name == "sqlite":
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def read_session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)
