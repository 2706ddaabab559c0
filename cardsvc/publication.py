"""Signed documents as served: body, ETag, signing time (shared by every publisher)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime


def etag_of(body: str) -> str:
    """A strong ETag: the body's SHA-256, shortened (collisions only cost a cache miss)."""
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


@dataclass(frozen=True, kw_only=True)
class Publication:
    """A signed document as served: body, ETag and when it was signed."""

    body: str
    etag: str
    signed_at: datetime
