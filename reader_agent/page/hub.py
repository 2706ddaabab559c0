"""Fan-out of the page state to Server-Sent Events subscribers.

Any thread (the reader watcher, the link, a request) calls :meth:`Hub.publish`; each
subscriber reads in its own language (the snapshot is built once per language in use), and each
subscriber (one per open page, on the server's event loop) holds only the *latest*
snapshot, so a slow browser skips intermediate states instead of queueing them, and
never misses the last one. Every snapshot is the whole state: a page that reconnects is
whole again with the first message.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["Hub"]

#: How long one SSE response lives before the browser reconnects (EventSource does so by
#: itself); bounds how long a server shutdown waits for open streams.
STREAM_SECONDS = 25.0
KEEPALIVE_SECONDS = 10.0
RETRY_MS = 500


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, lang: str) -> None:
        self.loop = loop
        self.lang = lang
        self.latest: str | None = None
        self.ready = asyncio.Event()

    def offer(self, payload: str) -> None:  # on the subscriber's loop
        self.latest = payload
        self.ready.set()


class Hub:
    """Builds the snapshot with ``build(lang)`` on every publish and hands it to
    subscribers."""

    def __init__(self, build: Callable[[str], dict[str, Any]]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self._version = 0
        self._closed = False

    def snapshot(self, lang: str) -> dict[str, Any]:
        with self._lock:
            version = self._version
        return {**self._build(lang), "version": version}

    def publish(self) -> None:
        with self._lock:
            self._version += 1
            subscribers = list(self._subscribers)
        if not subscribers:
            return
        payloads = {
            lang: json.dumps(self.snapshot(lang), ensure_ascii=False, separators=(",", ":"))
            for lang in {sub.lang for sub in subscribers}
        }
        for sub in subscribers:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, payloads[sub.lang])
            except RuntimeError:  # its loop is closed: the server is stopping
                continue

    def close(self) -> None:
        """End every stream (server shutdown)."""
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.loop.call_soon_threadsafe(sub.ready.set)
            except RuntimeError:
                continue

    async def stream(self, lang: str) -> AsyncIterator[str]:
        """SSE lines: the current state at once, then every change, for a bounded time."""
        sub = _Subscriber(asyncio.get_running_loop(), lang)
        with self._lock:
            self._subscribers.add(sub)
        try:
            first = json.dumps(self.snapshot(lang), ensure_ascii=False, separators=(",", ":"))
            yield f"retry: {RETRY_MS}\nevent: state\ndata: {first}\n\n"
            loop = asyncio.get_running_loop()
            until = loop.time() + STREAM_SECONDS
            while not self._closed:
                left = until - loop.time()
                if left <= 0:
                    return
                try:
                    await asyncio.wait_for(sub.ready.wait(), min(left, KEEPALIVE_SECONDS))
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                sub.ready.clear()
                if sub.latest is not None:
                    payload, sub.latest = sub.latest, None
                    yield f"event: state\ndata: {payload}\n\n"
        finally:
            with self._lock:
                self._subscribers.discard(sub)
