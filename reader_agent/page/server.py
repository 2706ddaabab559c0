"""uvicorn for the counter page: open event streams end as soon as the server stops, and
request heads are bounded.

An SSE response never finishes by itself, and uvicorn waits for open responses before it
exits; closing the hub first ends every stream, so Ctrl-C (or a test) stops at once.

uvicorn's httptools protocol reads a request head of any size; h11's holds at most
``h11_max_incomplete_event_size`` bytes of an unfinished head and answers 400 past it. One
clerk's page needs none of httptools' speed, so the page is served by h11.
"""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastapi import FastAPI

from reader_agent.page.hub import Hub
from reader_agent.page.security import MAX_HEAD

__all__ = ["PageServer"]


class PageServer(uvicorn.Server):
    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        super().__init__(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                        timeout_graceful_shutdown=5, http="h11",
                                        h11_max_incomplete_event_size=MAX_HEAD))  # fmt: skip
        self._hub: Hub = app.state.hub

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._hub.close()
        super().handle_exit(sig, frame)

    def stop(self) -> None:
        """Ask a server running on another thread to stop."""
        self._hub.close()
        self.should_exit = True
