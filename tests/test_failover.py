"""Several endpoints: requests spread over them and fail over when one stops.

Two real `ananke serve` processes on 127.0.0.1; one is killed while requests are in flight, and
every request still completes with a valid output.
"""

from __future__ import annotations

import asyncio

import pytest

from ananke import Ananke, ConfigurationError, PyConstraintIR, PyGenerationRequest
from ananke.backends.failover import FailoverBackend
from tests.servers import ananke_serve

pytestmark = pytest.mark.model

CODE = PyConstraintIR("code", regex_patterns=[r"[A-Z]{2}[0-9]{3}"])


def _request(i: int) -> PyGenerationRequest:
    return PyGenerationRequest(f"Give product code number {i}.", [CODE], max_tokens=12, temperature=0.0)


def test_endpoint_lists_are_checked():
    client = Ananke("http://127.0.0.1:9, openai+http://127.0.0.1:10/v1?server=sglang")
    assert isinstance(client._backend, FailoverBackend) and len(client._backend.members) == 2
    for bad in ("http://127.0.0.1:9,", "http://127.0.0.1:9,local", "http://127.0.0.1:9,invalid://x"):
        with pytest.raises(ConfigurationError):
            Ananke(bad)


@pytest.fixture
def two_servers(tmp_path):
    with (
        ananke_serve("--max-concurrency", "2", log_path=tmp_path / "a.log") as a,
        ananke_serve("--max-concurrency", "2", log_path=tmp_path / "b.log") as b,
    ):
        yield a, b


async def test_one_server_stopped_mid_run_every_request_completes(two_servers):
    a, b = two_servers
    async with Ananke(f"{a},{b}", timeout_secs=120, max_retries=2) as client:
        assert await client.health_check() is True
        tasks = [asyncio.create_task(client.generate(_request(i))) for i in range(6)]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        a.process.kill()  # requests on `a` are cut off mid-generation
        a.process.wait(timeout=10)
        responses = await asyncio.gather(*tasks)
        assert len(responses) == 6
        assert all(r.validation.all_satisfied for r in responses), [r.code for r in responses]
        members = {m.url: m for m in client._backend.members}
        assert members[a].down_until > 0  # the stopped one is marked down…
        assert members[b].down_until == 0  # …and the other serves
        more = await asyncio.gather(*(client.generate(_request(i)) for i in range(2)))
        assert all(r.validation.all_satisfied for r in more)
        assert await client.health_check() is True  # one endpoint is enough


async def test_every_endpoint_down_is_one_clear_error():
    async with Ananke("http://127.0.0.1:9,http://127.0.0.1:10", timeout_secs=20, max_retries=1) as client:
        assert await client.health_check() is False
        with pytest.raises(RuntimeError, match="every endpoint failed"):
            await client.generate(_request(0))
