"""Faults with real processes and sockets: a killed server, a restarted one, servers that stall
or hang up. The client must raise the right typed error within its timeout, retry only what may
be retried, and report every request's own outcome."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from ananke import (
    Ananke,
    AnankeError,
    BackendError,
    ConstraintCompileError,
    GenerationTimeout,
    PyConstraintIR,
    PyGenerationRequest,
    PyGenerationResponse,
)
from tests.servers import ananke_serve, free_port

pytestmark = pytest.mark.model

DIGITS = PyConstraintIR("digits", regex_patterns=[r"[0-9]{4}"])


def short() -> PyGenerationRequest:
    return PyGenerationRequest("What year is it?", [DIGITS], max_tokens=8, temperature=0.0)


# A grammar no output completes: a generation under it runs until max_tokens whatever the model
# does and however fast the machine decodes, so it is surely still running when the test acts.
ENDLESS = PyConstraintIR("endless", grammar="start: /[a-z ]+/ start")


def long() -> PyGenerationRequest:
    return PyGenerationRequest("Write a very long story.", [ENDLESS], max_tokens=1000, temperature=1.0)


async def until_in_flight(url: str) -> None:
    """Wait (bounded) until the server's metrics show a generation running."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        for _ in range(600):
            text = (await http.get("/metrics")).text
            if any(
                line.startswith("ananke_in_flight ") and float(line.split()[1]) >= 1
                for line in text.splitlines()
            ):
                return
            await asyncio.sleep(0.05)
    raise AssertionError("no generation started within 30 s")


class RawServer:
    """A loopback TCP server that accepts and then either hangs up or says nothing at all."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour, self.connections = behaviour, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        deadline = time.monotonic() + 60  # bounded: stops by itself
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed under us: done
                return
            self.connections += 1
            if self.behaviour == "hang-up":
                conn.close()
            else:  # "silent": read nothing, answer nothing, keep the socket open
                self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        for conn in self._held:
            conn.close()
        self.sock.close()


def test_server_that_hangs_up_is_retried_then_a_backend_error():
    server = RawServer("hang-up")
    try:

        async def run():
            async with Ananke(server.url, timeout_secs=10, max_retries=2) as client:
                started = time.monotonic()
                with pytest.raises(BackendError):
                    await client.generate(short())
                return time.monotonic() - started

        seconds = asyncio.run(run())
        assert server.connections == 3  # the first try and two retries
        assert seconds < 10
    finally:
        server.close()


def test_silent_server_times_out_within_the_timeout():
    server = RawServer("silent")
    try:

        async def run():
            async with Ananke(server.url, timeout_secs=2, max_retries=3) as client:
                started = time.monotonic()
                with pytest.raises(GenerationTimeout):
                    await client.generate(short())
                assert await client.health_check() is False
                return time.monotonic() - started

        assert asyncio.run(run()) < 2 + 2.5  # the timeout, plus health_check's 2 s at most
    finally:
        server.close()


def test_server_killed_mid_request(tmp_path):
    with ananke_serve(log_path=tmp_path / "server.log") as url:

        async def run():
            async with Ananke(url, timeout_secs=60, max_retries=1) as client:
                task = asyncio.create_task(client.generate(long()))
                await until_in_flight(url)
                url.process.kill()
                started = time.monotonic()
                with pytest.raises(BackendError):
                    await task
                return time.monotonic() - started

        assert asyncio.run(run()) < 10


def test_gather_reports_each_requests_own_outcome(tmp_path):
    with ananke_serve(log_path=tmp_path / "server.log") as url:

        async def run():
            async with Ananke(url, timeout_secs=60) as client, Ananke(url, timeout_secs=1) as impatient:
                return await asyncio.gather(
                    client.generate(short()),
                    client.generate(PyGenerationRequest("x", [PyConstraintIR("bad", regex_patterns=["a("])])),
                    impatient.generate(long()),
                    client.generate(short()),
                    return_exceptions=True,
                )

        ok, bad, slow, ok2 = asyncio.run(run())
        assert isinstance(ok, PyGenerationResponse) and ok.validation.all_satisfied
        assert isinstance(bad, ConstraintCompileError) and bad.constraint == "bad"
        assert isinstance(slow, GenerationTimeout)
        assert isinstance(ok2, PyGenerationResponse) and ok2.validation.all_satisfied


def test_restart_mid_batch_loses_no_request(tmp_path):
    """Every request of a batch ends as a response or a typed error, none lost or hung."""
    port = free_port()
    log = tmp_path / "server.log"
    n = 12
    with ananke_serve(log_path=log, port=port) as url:

        async def batch():
            async with Ananke(url, timeout_secs=90, max_retries=8) as client:  # ~16 s of backoff
                return await asyncio.gather(
                    *[client.generate(short()) for _ in range(n)], return_exceptions=True
                )

        results: list = []
        runner = threading.Thread(target=lambda: results.extend(asyncio.run(batch())))
        runner.start()
        asyncio.run(until_in_flight(url))  # the batch is under way (most of it still to come)
        url.process.kill()
        url.process.wait()
        with ananke_serve(log_path=log, port=port):  # the same address comes back
            runner.join(timeout=120)
            assert not runner.is_alive()
    assert len(results) == n
    assert all(isinstance(r, (PyGenerationResponse, AnankeError)) for r in results), results
    succeeded = [r for r in results if isinstance(r, PyGenerationResponse)]
    assert all(r.validation.all_satisfied for r in succeeded)
    assert len(succeeded) >= n // 2, results  # retries carry most of them over the restart
