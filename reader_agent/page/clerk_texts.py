"""What the clerk reads about their own work (signing in and out, looking a person up,
card status changes, e-card codes): the catalogue entries ``clerk.<area>.<what>.<part>``
(part one of ``title``, ``detail``, ``next``) of :mod:`wording`, as :class:`Words`.
"""

from __future__ import annotations

from typing import Any

from reader_agent.page.words import Words
from wording import Message

__all__ = ["clerk_words"]


def clerk_words(
    key: str,
    *,
    status: int,
    detail: Message | None = None,
    extra: dict[str, Any] | None = None,
    **fields: Any,
) -> Words:
    """The problem ``clerk.<key>``: title, detail and next step, filled with ``fields``
    and put into words in each reader's language."""
    base = f"clerk.{key}"
    return Words(
        status=status,
        code=f"clerk-{key.replace('.', '-')}",
        title=Message(f"{base}.title", fields),
        detail=detail if detail is not None else Message(f"{base}.detail", fields),
        next=Message(f"{base}.next", fields),
        extra=dict(extra or {}),
    )
