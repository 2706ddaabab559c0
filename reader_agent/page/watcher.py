"""A daemon thread that follows the card readers through pcscd and reports every change.

It loops on :func:`reader_agent.pcsc.watch_readers`, which returns as soon as a reader or
card changes (or after a short wait), so an insertion or a removal reaches the desk, and
from there the page, within pcscd's own polling delay (well under a second with vpcd).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from reader_agent import pcsc
from reader_agent.errors import AgentError
from reader_agent.page.words import Words, explain, problem_words

__all__ = ["Watcher"]

_log = logging.getLogger(__name__)


class Watcher:
    """Calls ``on_readers(states, error)`` whenever the readers or their cards change."""

    def __init__(
        self,
        on_readers: Callable[[tuple[pcsc.ReaderState, ...], Words | None], None],
        *,
        wait: float = 0.25,
    ) -> None:
        self._on_readers = on_readers
        self._wait = wait
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reader watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self._wait + 10)

    def _run(self) -> None:
        states: tuple[pcsc.ReaderState, ...] = ()
        error: Words | None = None
        first = True
        while not self._stop.is_set():
            try:
                seen = pcsc.watch_readers(states, wait=self._wait)
                problem: Words | None = None
            except AgentError as exc:
                seen, problem = (), explain(exc)
            except Exception:  # the watcher must outlive anything pyscard throws
                _log.exception("reader watcher")
                seen, problem = (), problem_words(503, "internal")
            if first or _summary(seen) != _summary(states) or problem != error:
                self._on_readers(seen, problem)
                first = False
            states, error = seen, problem
            if problem is not None or not seen:
                # pcscd down or no reader: nothing to block on, so do not spin.
                self._stop.wait(1.0)


def _summary(states: tuple[pcsc.ReaderState, ...]) -> tuple[tuple[str, bool, bytes], ...]:
    """What matters to the counter (not pcscd's in-use flags, which our own use flips)."""
    return tuple((s.name, s.present, s.atr) for s in states)
