"""uvicorn for the counter page: open event streams end as soon as the server stops.

An SSE response never finishes by itself, and uvicorn waits for open responses before it
exits; closing the hub first ends every stream, so Ctrl-C (or a test) stops at once.
"""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastapi import FastAPI

from reader_agent.page.hub import Hub

__all__ = ["PageServer"]


class PageServer(uvicorn.Server):
    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        super().__init__(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                        timeout_graceful_shutdown=5))  # fmt: skip
        self._hub: Hub = app.state.hub

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._hub.close()
        super().handle_exit(sig, frame)

    def stop(self) -> None:
        """Ask a server running on another thread to stop."""
        self._hub.close()
        self.should_exit = True
