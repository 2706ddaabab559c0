"""Structured JSON logs with the request's id, and a redaction filter on the way out.

One JSON object a line: ``time``, ``level``, ``logger``, ``message``, ``request_id``
(while a request is served), then the record's ``extra`` fields and ``exc``. Every line
passes :class:`Redact` first, whatever logger wrote it (ours, uvicorn's, a library's):
full 18-character citizen ID numbers, activation and receipt codes, QR codes
(``SSC1:``/``SSC2:``), compact JWS/JWT (access tokens, assertions, credentials), bearer
credentials, PEM private keys, a JWK's private ``d`` and anything named like a PIN,
password or secret become ``[redacted]``. Code should not log them in the first place;
this is what stops the one line that does.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

#: The id of the request being served (set by :class:`cardsvc.api.observe.Observe`).
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cardsvc_request_id", default=None
)

REDACTED = "[redacted]"

#: Names of members whose value is secret (a JWK's private scalar ``d``, PINs, passwords).
_SECRET_NAMES = r"d|pin|new_pin|old_pin|puk|password|passphrase|secret|client_secret"  # noqa: S105
_PEM = r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)"
_MEMBER = rf"""(["'](?:{_SECRET_NAMES})["']\s*:\s*)(?:"[^"]*"|'[^']*'|[^,}}\s]+)"""

#: (pattern, replacement): what is found and what takes its place.
_RULES: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys (any type), whole, or to the end if cut off.
    (re.compile(_PEM, re.S), REDACTED),
    # A JWK's private scalar and members named like secrets, in JSON (also repr'd dicts).
    (re.compile(_MEMBER, re.I), rf"\g<1>{REDACTED}"),
    # ... and in key=value form.
    (re.compile(r"\b(pin|new_pin|puk|password|passphrase|secret)=[^\s&,;]+", re.I),
     rf"\g<1>={REDACTED}"),
    # Bearer / DPoP credentials in a header line.
    (re.compile(r"\b(bearer|dpop)\s+[A-Za-z0-9._~+/=-]{8,}", re.I), rf"\g<1> {REDACTED}"),
    # Compact JWS/JWT: a base64url JSON header "eyJ..." and at least one more part.
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?"), REDACTED),
    # QR codes: SSC1: (QR token) and SSC2: (device-bound), in the base45 alphabet, which
    # has a space: what follows in capitals and digits goes too (more, never less).
    (re.compile(r"SSC[0-9]:[0-9A-Z $%*+./:-]+"), REDACTED),
    # Citizen ID numbers (17 digits and a check character), not inside a longer number.
    (re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9A-Za-z])"), REDACTED),
    # Activation and receipt codes: three fours of capitals and digits.
    (re.compile(r"(?<![A-Za-z0-9])[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}(?![A-Za-z0-9])"), REDACTED),
]


#: Any of the rules, searched once (case-blind: it may find more, never less): most lines,
#: an access line, match none, and one search costs a fraction of every substitution.
_ANY = re.compile("|".join(f"(?:{p.pattern})" for p, _ in _RULES), re.S | re.I)


def redact(text: str) -> str:
    """``text`` with every secret this module knows of replaced by ``[redacted]``."""
    if not _ANY.search(text):
        return text
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class Redact(logging.Filter):
    """Rewrites each record's message (with its arguments) and exception text redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be said
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None
        return True


#: LogRecord attributes that are not ``extra`` fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record (after :class:`Redact`)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in out and not name.startswith("_"):
                out[name] = value if isinstance(value, int | float | bool | None) else redact(
                    str(value)
                )
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


#: The plain-text form (``CARDSVC_LOG_FORMAT=text``), redacted as well.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def handler(stream: IO[str] | None = None, *, json_lines: bool = True) -> logging.Handler:
    """A stream handler (stderr by default) writing redacted JSON lines (or text)."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.addFilter(Redact())
    out.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    return out


def configure(
    level: int | str = logging.INFO, stream: IO[str] | None = None, *, json_lines: bool = True
) -> logging.Handler:
    """Send every logger's records through one redacting JSON handler (``cardsvc serve``).

    Replaces the root logger's handlers; uvicorn's loggers propagate to it (the server is
    started with ``log_config=None`` and without its access log, which would log raw
    paths: :class:`cardsvc.api.observe.Observe` logs each request by route template).
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    installed = handler(stream, json_lines=json_lines)
    root.addHandler(installed)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return installed
