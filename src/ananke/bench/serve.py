"""`ananke serve` in a subprocess on a loopback port, for the benchmarks and the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


class ServerURL(str):
    """A base URL that also carries the server's process."""

    process: subprocess.Popen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def ananke_serve(*args: str, log_path: Path, ready_timeout: float = 60.0, port: int | None = None):
    """`python -m ananke serve` on a free (or the given) loopback port; yields its base URL.

    The Popen object is reachable as `url.process` for tests that kill the server.
    """
    port = port or free_port()
    with open(log_path, "a") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ananke", "serve", "--port", str(port), *args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.process = process
    try:
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"server not ready in {ready_timeout} s:\n{log_path.read_text()}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
