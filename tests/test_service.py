"""The inference service and the HTTP client, over real uvicorn on 127.0.0.1 with the real model."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ananke import (
    Ananke,
    AuthenticationError,
    BackendError,
    ConstraintCompileError,
    GenerationTimeout,
    InvalidRequestError,
    PyConstraintIR,
    PyGenerationRequest,
    ServiceError,
)
from ananke.engines.llamacpp import LlamaCppEngine
from ananke.server.app import ServerSettings, create_app
from tests.servers import ananke_serve, free_port, uvicorn_thread
from tests.test_compiler import SEED_EMAIL, SEED_GRAMMAR, SEED_SCHEMA

pytestmark = pytest.mark.model

KEY = "test-key-5f1b2c"
JSON_C = PyConstraintIR("result_json", json_schema=SEED_SCHEMA)
EMAIL_C = PyConstraintIR("email", regex_patterns=[SEED_EMAIL])
GRAMMAR_C = PyConstraintIR("kv_grammar", grammar=SEED_GRAMMAR)
BOUNDED_EMAIL_C = PyConstraintIR("email", regex_patterns=[r"[a-z.]{1,12}@[a-z]{1,12}\.(com|org)"])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with ananke_serve("--api-key", KEY, log_path=log) as url:
        yield url, log


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """One generation at a time and no queue: the second concurrent request must get 429."""
    log = tmp_path_factory.mktemp("serve") / "small.log"
    with ananke_serve("--max-concurrency", "1", "--max-queue", "0", log_path=log) as url:
        yield url


def _client(url: str, **kw) -> Ananke:
    kw.setdefault("modal_api_key", KEY)
    kw.setdefault("timeout_secs", 120)
    return Ananke(url, **kw)


def _req(constraint, prompt, **kw) -> PyGenerationRequest:
    kw.setdefault("temperature", 0.0)
    kw.setdefault("max_tokens", 64)
    return PyGenerationRequest(prompt, [constraint] if constraint else [], **kw)


def _auth() -> dict:
    return {"authorization": f"Bearer {KEY}"}


# ---------------------------------------------------------------------- the seed's remote path


async def test_seed_examples_through_the_service(server):
    url, _ = server
    async with _client(url) as client:
        assert await client.health_check() is True
        for constraint, prompt in [
            (JSON_C, "Report the result of the build as JSON."),
            (EMAIL_C, "Give the e-mail address of Jane Doe (jane.doe@example.org)."),
            (GRAMMAR_C, 'Write an object mapping "a" to 1 and "b" to 2.'),
        ]:
            response = await client.generate(_req(constraint, prompt))
            assert response.validation.all_satisfied, response.validation.errors
            assert response.provenance.model == "SmolLM2-135M-Instruct.Q4_1"
            assert response.metadata.tokens_generated > 0


async def test_eight_gathered_requests_all_succeed(server):
    url, _ = server
    async with _client(url) as client:
        # Batched decoding is not bit-identical to single decoding, so the free-running seed regex
        # may wander under batching; a bounded language always ends inside max_tokens.
        requests = [
            _req(BOUNDED_EMAIL_C, "Give the e-mail address of Jane Doe (jane.doe@example.org).")
            for _ in range(8)
        ]
        responses = await asyncio.gather(*[client.generate(r) for r in requests])
    assert all(r.validation.all_satisfied for r in responses), [
        (r.text, r.metadata.finish_reason) for r in responses
    ]


async def test_client_validates_itself(server):
    """A length-cut output is reported violated by the client's own validator."""
    url, _ = server
    letters = PyConstraintIR("letters", regex_patterns=["[ab]{300}"])  # no completion is found
    async with _client(url) as client:
        response = await client.generate(_req(letters, "Write letters.", max_tokens=3))
    assert response.metadata.finish_reason == "length"
    assert response.validation.violated == ["letters"]


async def test_streaming_deltas_equal_the_final_text(server):
    url, _ = server
    chunks, final = [], None
    async with _client(url) as client:
        async for item in client.generate_stream(_req(JSON_C, "Report the result of the build as JSON.")):
            if isinstance(item, str):
                chunks.append(item)
            else:
                final = item
    assert final is not None and len(chunks) > 1
    assert "".join(chunks) == final.text and final.validation.all_satisfied


async def test_remote_compile_and_cache_commands(server):
    url, _ = server
    async with _client(url) as client:
        remote = await client.compile_constraints([JSON_C], on_service=True)
        local = await client.compile_constraints([JSON_C])
        assert remote["hash"] == local["hash"] and remote["schema"] == local["schema"]
        assert (await client.cache_stats(on_service=True))["size"] >= 1
        await client.clear_cache(on_service=True)
        assert (await client.cache_stats(on_service=True))["size"] == 0


async def test_relaxed_mode_through_the_service(server):
    url, _ = server
    pair = PyConstraintIR(
        "pair",
        json_schema=json.dumps(
            {"type": "array", "items": {"enum": [1]}, "minItems": 2, "maxItems": 2, "uniqueItems": True}
        ),
    )
    async with _client(url) as client:  # the server runs strict by default
        with pytest.raises(ConstraintCompileError, match=r"uniqueItems.*schema_mode='relaxed'"):
            await client.compile_constraints([pair], on_service=True)
        remote = await client.compile_constraints([pair], on_service=True, schema_mode="relaxed")
        local = await client.compile_constraints([pair], schema_mode="relaxed")
        assert remote["relaxed"] == local["relaxed"] == ["pair: /uniqueItems: not enforced"]
        assert remote["hash"] == local["hash"]
    async with _client(url, schema_mode="relaxed") as client:
        response = await client.generate(_req(pair, "Two ones.", max_tokens=16))
        # the only document the relaxed grammar admits breaks uniqueItems: three honest failures
        assert response.text == "[1,1]" and response.metadata.attempts == 3
        assert response.validation.violated == ["pair"]
    body = {"prompt": "Two ones.", "constraints": [pair.to_dict()], "max_tokens": 16, "temperature": 0}
    # a direct HTTP caller gets the service's own verdict and attempts
    answer = httpx.post(
        f"{url}/v1/generate", json={**body, "schema_mode": "relaxed"}, headers=_auth(), timeout=300
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["relaxed"] == ["pair: /uniqueItems: not enforced"] and result["attempts"] == 3
    assert result["validation"]["violated"] == ["pair"] and not result["validation"]["all_satisfied"]
    once = httpx.post(
        f"{url}/v1/generate",
        json={**body, "schema_mode": "relaxed", "max_attempts": 1},
        headers=_auth(),
        timeout=300,
    )
    assert once.json()["attempts"] == 1
    # a caller that checks outputs itself (the Python client) spares the server its check: one
    # attempt, no verdict; retries would need one, so asking for both is a 422
    unchecked = {**body, "schema_mode": "relaxed", "validate_output": False}
    answer = httpx.post(f"{url}/v1/generate", json=unchecked, headers=_auth(), timeout=300)
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == "[1,1]" and answer.json()["attempts"] == 1
    assert answer.json()["validation"] is None
    contradiction = {**unchecked, "max_attempts": 2}
    wrong = httpx.post(f"{url}/v1/generate", json=contradiction, headers=_auth(), timeout=60)
    assert wrong.status_code == 422 and "validate_output" in wrong.json()["error"]["message"]
    refused = httpx.post(f"{url}/v1/generate", json=body, headers=_auth(), timeout=60)
    assert refused.status_code == 400 and "uniqueItems" in refused.text
    loose = {**body, "schema_mode": "loose"}
    wrong = httpx.post(f"{url}/v1/generate", json=loose, headers=_auth(), timeout=60)
    assert wrong.status_code == 422


# ---------------------------------------------------------------------- auth


async def test_auth(server):
    url, log = server
    for key in (None, "wrong-key"):
        async with Ananke(url, modal_api_key=key) as client:
            with pytest.raises(AuthenticationError):
                await client.generate(_req(None, "hi", max_tokens=2))
    assert httpx.get(f"{url}/metrics").status_code == 401
    assert httpx.get(f"{url}/metrics", headers=_auth()).status_code == 200
    assert httpx.get(f"{url}/health").status_code == 200  # health needs no key
    body = httpx.post(f"{url}/v1/generate", json={"prompt": "x"}, headers={"authorization": "Bearer nope"})
    assert body.status_code == 401 and "nope" not in body.text and KEY not in body.text
    assert KEY not in log.read_text()


# ---------------------------------------------------------------------- bad input and limits


@pytest.mark.parametrize(
    "payload, status, fragment",
    [
        ({"prompt": "x" * 100_001}, 413, "prompt"),
        ({"prompt": "x", "max_tokens": 0}, 422, "max_tokens"),
        ({"prompt": "x", "max_tokens": 100_000}, 422, "max_tokens"),
        ({"prompt": "x", "temperature": -1}, 422, "temperature"),
        ({"prompt": "x", "temperature": 9}, 422, "temperature"),
        ({"prompt": "x", "constraints": [{"name": f"c{i}", "regex_patterns": ["a"]} for i in range(17)]},
         422, "constraints"),
        ({"prompt": "x", "constraints": [{"name": "big", "regex_patterns": ["a" * (1 << 20 + 1)]}]},
         413, "big"),
        ({"prompt": "x", "constraints": [{"name": "bad", "regex_patterns": ["a("]}]}, 400, "position 1"),
        ({"prompt": "x", "constraints": [{"name": "nk", "json_schema": '{"not": {"multipleOf": 3}}'}]},
         400, "not"),
        ({"prompt": "x", "constraints": [{"name": "no", "json_schema": '{"not": {}}'}]},
         400, "Unsatisfiable"),
        ({"prompt": "x", "constraints": [{"name": "e"}]}, 400, "sets none of"),
        ({"prompt": "x", "bogus": 1}, 422, "bogus"),
        ({"max_tokens": 3}, 422, "prompt"),
        ({"prompt": 3}, 422, "prompt"),
    ],
)  # fmt: skip
def test_bad_input_gets_its_status_and_a_message(server, payload, status, fragment):
    url, _ = server
    response = httpx.post(f"{url}/v1/generate", json=payload, headers=_auth(), timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (
        fragment in error["message"] or fragment == error.get("field") or fragment == error.get("constraint")
    )
    assert error["type"] and error["request_id"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_malformed_json_body(server):
    url, _ = server
    response = httpx.post(
        f"{url}/v1/generate", content=b"{nope", headers={**_auth(), "content-type": "application/json"}
    )
    assert response.status_code == 422 and "not valid JSON" in response.json()["error"]["message"]


# A grammar no output completes (no base case): a generation under it runs until max_tokens,
# whatever the model and however fast the machine decodes — a request that is surely in flight.
ENDLESS = {"name": "endless", "grammar": "start: /[a-z ]+/ start"}


def test_deadline_is_504(server):
    url, _ = server
    payload = {
        "prompt": "Write a long story.",
        "constraints": [ENDLESS],
        "max_tokens": 1000,
        "timeout_secs": 1,
    }
    # the output cannot finish before 1000 tokens: a 504 means the deadline ended it
    response = httpx.post(f"{url}/v1/generate", json=payload, headers=_auth(), timeout=120)
    assert response.status_code == 504 and response.json()["error"]["type"] == "timeout"


async def test_full_queue_is_429_with_retry_after(small_server):
    payload = {"prompt": "Write a long story.", "constraints": [ENDLESS], "max_tokens": 1000, "seed": 1}
    async with (
        httpx.AsyncClient(base_url=small_server, timeout=60) as http,
        http.stream("POST", "/v1/generate", json={**payload, "stream": True}) as first,
    ):
        lines = first.aiter_lines()
        while not (await anext(lines)).startswith("data:"):
            pass  # the first delta: the first request now holds the only slot
        second = await http.post("/v1/generate", json=payload)
        assert second.status_code == 429 and second.headers["retry-after"] == "1"
        assert first.status_code == 200


async def _in_flight(http: httpx.AsyncClient, count: int) -> bool:
    """Wait (bounded: 60 s) until the server's in-flight gauge reads `count`."""
    for _ in range(600):
        if re.search(rf"^ananke_in_flight {count}\.0$", (await http.get("/metrics")).text, re.MULTILINE):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_client_disconnect_cancels_generation(server):
    url, _ = server
    payload = {"prompt": "Write a long story.", "constraints": [ENDLESS], "max_tokens": 1000, "stream": True}
    async with httpx.AsyncClient(base_url=url, headers=_auth(), timeout=60) as http:
        async with http.stream("POST", "/v1/generate", json=payload) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    break  # one delta (the output cannot finish before 1000 tokens), then hang up
        assert await _in_flight(http, 0)


async def test_client_leaving_a_plain_request_is_a_quiet_cancel(server):
    url, log = server
    payload = {"prompt": "Write a long story.", "constraints": [ENDLESS], "max_tokens": 1000}
    async with httpx.AsyncClient(base_url=url, headers=_auth(), timeout=60) as http:
        request = asyncio.ensure_future(http.post("/v1/generate", json=payload))
        assert await _in_flight(http, 1)
        request.cancel()  # hang up while it decodes
        assert await _in_flight(http, 0)
    assert "Exception in ASGI application" not in log.read_text()


def test_metrics_and_openapi(server):
    url, _ = server
    metrics = httpx.get(f"{url}/metrics", headers=_auth()).text
    for name in ("ananke_requests_total", "ananke_request_latency_seconds_bucket", "ananke_tokens_generated",
                 "ananke_mask_time_per_token_seconds", "ananke_compile_cache_hits_total",
                 "ananke_compile_cache_misses_total", "ananke_queue_depth"):  # fmt: skip
        assert name in metrics
    spec = httpx.get(f"{url}/openapi.json", headers=_auth()).json()
    assert {"/v1/generate", "/v1/compile", "/health", "/metrics"} <= set(spec["paths"])
    assert httpx.get(f"{url}/docs", headers=_auth()).status_code == 200


def test_unhealthy_engine_is_503(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model")
    with uvicorn_thread(create_app(LlamaCppEngine(model_path=str(broken)))) as url:
        response = httpx.get(f"{url}/health")
        assert response.status_code == 503 and response.json()["status"] == "unavailable"

        async def check() -> bool:
            async with Ananke(url) as client:
                return await client.health_check()

        assert asyncio.run(check()) is False


class ExplodingEngine(LlamaCppEngine):
    """A deliberately broken engine (a fake, named as such): raises a plain bug mid-request."""

    async def stream(self, request, compiled, deltas=True, schema_in_prompt=True):
        raise ZeroDivisionError("a bug")
        yield  # pragma: no cover


def test_unexpected_error_is_500_with_request_id_and_server_keeps_serving(caplog):
    app = create_app(ExplodingEngine(), ServerSettings())
    with uvicorn_thread(app) as url:
        response = httpx.post(f"{url}/v1/generate", json={"prompt": "x"})
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["type"] == "internal_error" and error["request_id"]
        assert "ZeroDivisionError" in caplog.text and error["request_id"] in caplog.text
        assert httpx.post(f"{url}/v1/compile", json={"constraints": []}).status_code == 200


# ---------------------------------------------------------------------- retries, against a real flaky server


def _result(text: str) -> dict:
    return {"text": text, "finish_reason": "stop", "model": "flaky", "tokens_generated": 1,
            "prompt_tokens": 1, "generation_time_ms": 1.0, "constraint_compile_time_ms": 0.0}  # fmt: skip


def flaky_app(script: list):
    """/v1/generate answers each call with the next step of `script` (the last one repeats)."""
    calls: list[float] = []

    async def generate(request):
        calls.append(time.monotonic())
        step = script[min(len(calls), len(script)) - 1]
        streaming = (await request.json()).get("stream", False)
        if step == "ok" and streaming:
            delta, done = json.dumps({"delta": '"ok"'}), json.dumps(_result('"ok"'))
            event = f"data: {delta}\n\nevent: done\ndata: {done}\n\n"
            return Response(event, media_type="text/event-stream")
        if step == "ok":
            return JSONResponse(_result('"ok"'))
        if step == "garbage":
            return PlainTextResponse("this is not an event stream")
        if step == "stall":
            await asyncio.sleep(30)  # longer than any client timeout in these tests
            return JSONResponse(_result("late"))
        status, headers = step
        body = {"error": {"type": "x", "message": f"scripted {status}"}}
        return JSONResponse(body, status_code=status, headers=headers)

    async def health(request):
        return JSONResponse({"status": "ok", "model": "flaky", "engine": "test"})

    app = Starlette(routes=[Route("/v1/generate", generate, methods=["POST"]), Route("/health", health)])
    return app, calls


async def _generate(url: str, **kw):
    async with Ananke(url, **kw) as client:
        return await client.generate(_req(None, "x"))


def test_503_then_200_is_retried():
    app, calls = flaky_app([(503, {}), (503, {}), "ok"])
    with uvicorn_thread(app) as url:
        response = asyncio.run(_generate(url, max_retries=3))
    assert response.text == '"ok"' and len(calls) == 3


def test_400_is_not_retried():
    app, calls = flaky_app([(400, {}), "ok"])
    with uvicorn_thread(app) as url, pytest.raises(ServiceError, match="scripted 400"):
        asyncio.run(_generate(url, max_retries=3))
    assert len(calls) == 1


def test_422_is_a_typed_error_and_not_retried():
    app, calls = flaky_app([(422, {}), "ok"])
    with uvicorn_thread(app) as url, pytest.raises(InvalidRequestError):
        asyncio.run(_generate(url, max_retries=3))
    assert len(calls) == 1


def test_retry_after_is_honoured():
    app, calls = flaky_app([(429, {"Retry-After": "1"}), "ok"])
    with uvicorn_thread(app) as url:
        asyncio.run(_generate(url, max_retries=2))
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.95


def test_retries_run_out_with_the_last_error():
    app, calls = flaky_app([(503, {})])
    with uvicorn_thread(app) as url, pytest.raises(ServiceError, match="503"):
        asyncio.run(_generate(url, max_retries=2))
    assert len(calls) == 3


async def _stream_text(url: str, **kw) -> str:
    async with Ananke(url, **kw) as client:
        chunks = [c async for c in client.generate_stream(_req(None, "x")) if isinstance(c, str)]
    return "".join(chunks)


def test_malformed_answer_is_a_service_error():
    app, calls = flaky_app(["garbage"])
    with uvicorn_thread(app) as url:
        with pytest.raises(ServiceError, match="malformed JSON"):
            asyncio.run(_generate(url, max_retries=1))
        assert len(calls) == 2  # a garbled answer may be a proxy's fault: retried once
        with pytest.raises(ServiceError, match="without a result"):
            asyncio.run(_stream_text(url, max_retries=0))


def test_streaming_is_retried_before_its_first_delta():
    app, calls = flaky_app([(503, {}), "ok"])
    with uvicorn_thread(app) as url:
        assert asyncio.run(_stream_text(url, max_retries=2)) == '"ok"'
    assert len(calls) == 2


def test_stalled_server_times_out():
    app, _ = flaky_app(["stall"])
    with uvicorn_thread(app) as url:
        started = time.monotonic()
        with pytest.raises(GenerationTimeout):
            asyncio.run(_generate(url, timeout_secs=1, max_retries=0))
        assert time.monotonic() - started < 3


def test_closed_port():
    url = f"http://127.0.0.1:{free_port()}"

    async def check():
        async with Ananke(url, timeout_secs=5, max_retries=1) as client:
            started = time.monotonic()
            assert await client.health_check() is False
            assert time.monotonic() - started < 2
            with pytest.raises(BackendError, match="connection"):
                await client.generate(_req(None, "x"))
            assert time.monotonic() - started < 5

    asyncio.run(check())


# ---------------------------------------------------------------------- the CLI against the service


def _cli(*args: str, env_key: str | None = KEY) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MODAL_ENDPOINT", "MODAL_API_KEY")}
    if env_key:
        env["MODAL_API_KEY"] = env_key
    return subprocess.run(
        [sys.executable, "-m", "ananke", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_cli_against_the_service(server):
    url, _ = server
    assert _cli("health", "--endpoint", url).returncode == 0
    closed = _cli("health", "--endpoint", f"http://127.0.0.1:{free_port()}")
    assert closed.returncode == 1 and "unhealthy" in closed.stdout
    compiled = _cli("compile", "--regex", "[0-9]{3}", "--endpoint", url)
    assert compiled.returncode == 0, compiled.stderr
    assert len(json.loads(compiled.stdout)["hash"]) == 64
    stats = _cli("cache", "stats", "--endpoint", url)
    assert json.loads(stats.stdout)["size"] >= 1
    assert _cli("cache", "clear", "--endpoint", url).stdout.strip() == "cleared"
    denied = _cli("cache", "stats", "--endpoint", url, env_key="wrong")
    assert denied.returncode == 2 and "API key" in denied.stderr


def test_cli_streams_through_the_service(server):
    url, _ = server
    result = _cli("generate", "What year is it?", "--regex", "[0-9]{4}", "--stream", "--endpoint", url)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"[0-9]{4}\n", result.stdout)
    assert "valid" in result.stderr
