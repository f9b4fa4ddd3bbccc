"""Real servers for tests: `ananke serve` in a subprocess, and uvicorn apps in a thread."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import uvicorn

from ananke.bench.serve import ServerURL, ananke_serve, free_port

__all__ = ["ServerURL", "ananke_serve", "free_port", "uvicorn_thread"]


@contextmanager
def uvicorn_thread(app):
    """Serve an ASGI app with real uvicorn on a free loopback port, in a thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
