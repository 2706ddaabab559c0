"""Keyset pagination for every list endpoint: ``?limit=&cursor=`` -> ``{items, next_cursor}``.

Cursors are opaque to clients (base64url of the last key seen, tagged with the list it
belongs to), stable under inserts, and cost an index seek rather than an OFFSET scan.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from cardsvc.registry.errors import BadRequestError

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")]
Cursor = Annotated[
    str | None,
    Query(max_length=128, description="next_cursor of the previous page; omit for the first"),
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page"
    )


def encode_cursor(kind: str, key: object) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode().rstrip("=")


def _decode(kind: str, cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    prefix = kind + ":"
    if not text.startswith(prefix):
        raise BadRequestError("invalid cursor: pass next_cursor from the previous page")
    return text[len(prefix) :]


def uuid_cursor(kind: str, cursor: str | None) -> uuid.UUID | None:
    if cursor is None:
        return None
    try:
        return uuid.UUID(_decode(kind, cursor))
    except ValueError:
        raise BadRequestError("invalid cursor: pass next_cursor from the previous page") from None


def int_cursor(kind: str, cursor: str | None) -> int | None:
    if cursor is None:
        return None
    value = _decode(kind, cursor)
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise BadRequestError("invalid cursor: pass next_cursor from the previous page")
    return int(value)


def next_cursor(kind: str, keys: list[object], limit: int) -> str | None:
    """A cursor after the last key when the page is full (there may be more)."""
    return encode_cursor(kind, keys[-1]) if len(keys) == limit and keys else None
