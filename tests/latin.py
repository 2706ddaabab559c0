"""English left inside Chinese text: the check the zh-CN messages are held to.

A Chinese message may carry Latin letters only inside identifiers, codes and numbers (a
card number ``A00000001``, a fingerprint ``3F2A-91C0``, an entitlement id); a word of two
or more letters standing on its own is English that leaked in.
"""

from __future__ import annotations

import re

_LATIN_WORD = re.compile(r"(?<![A-Za-z0-9-])[A-Za-z]{2,}(?![A-Za-z0-9-])")


def latin_words(text: str) -> list[str]:
    """The English words in ``text`` (identifiers do not count)."""
    return _LATIN_WORD.findall(text)
