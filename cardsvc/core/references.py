"""The status reference every card and token carries (Token Status List, section 6)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cardsvc.core.errors import DecodeError

#: Indexes are allocated in shards of at most this many entries.
MAX_STATUS_INDEX = 2**32 - 1
MAX_URI_LENGTH = 512


@dataclass(frozen=True, kw_only=True)
class StatusReference:
    """Where a verifier looks up this card's or e-card's status: list ``uri``, entry ``idx``."""

    idx: int
    uri: str

    def __post_init__(self) -> None:
        if isinstance(self.idx, bool) or not isinstance(self.idx, int):
            raise DecodeError("status reference", "idx must be an integer")
        if not 0 <= self.idx <= MAX_STATUS_INDEX:
            raise DecodeError("status reference", f"idx {self.idx} is out of range")
        if not isinstance(self.uri, str) or not self.uri.startswith(("https://", "http://")):
            raise DecodeError("status reference", "uri must be an http(s) URL")
        if len(self.uri) > MAX_URI_LENGTH:
            raise DecodeError("status reference", f"uri longer than {MAX_URI_LENGTH}")

    def to_json(self) -> dict[str, object]:
        return {"status_list": {"idx": self.idx, "uri": self.uri}}

    @classmethod
    def from_json(cls, obj: object) -> StatusReference:
        if not isinstance(obj, Mapping) or set(obj) != {"status_list"}:
            raise DecodeError("status reference", "must be {status_list: {idx, uri}}")
        inner = obj["status_list"]
        if not isinstance(inner, Mapping) or set(inner) != {"idx", "uri"}:
            raise DecodeError("status reference", "status_list must hold exactly idx and uri")
        return cls(idx=inner["idx"], uri=inner["uri"])
