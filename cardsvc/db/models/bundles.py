"""The verifier bundle's tables: minted versions and the shard lists they held."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cardsvc.db.models.base import Base, UtcDateTime


class VerifierBundleRow(Base):
    """One minted bundle version (revision 0009)."""

    __tablename__ = "verifier_bundles"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    contents: Mapped[str] = mapped_column(Text)  # {"trust": hash, "shards": {id: hash}}




class VerifierBundleShardRow(Base):
    """A shard's ``status_list`` claim as some bundle version held it (revision 0010)."""

    __tablename__ = "verifier_bundle_shards"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    status_list: Mapped[str] = mapped_column(Text)  # JSON {"bits": n, "lst": base64url}
