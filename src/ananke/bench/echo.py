"""Bare ASGI apps for the service suite's floors, under uvicorn with nothing else (no routing,
validation, middleware or admission).

`app`: a loopback POST that reads its body and sends it back — the floor of any HTTP hop; with
`?hold_ms=N` it holds the answer N ms first (a blocking sleep: exact, where an event-loop timer
may fire up to a millisecond late), as a generation would. On a machine whose idle CPUs are slow
to wake (a VM) a hop around a job that leaves the client waiting tens of milliseconds costs more
than a back-to-back echo, and the held echo measures that floor.
`engine_app`: the same llama.cpp engine as `ananke serve`, running the posted generate body and
answering its text — the floor of *an engine* behind HTTP: the service's own layers (framework,
checks, admission, cache) are what it adds above this one.

Run as `python -m uvicorn ananke.bench.echo:app` (or `:engine_app`).
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs


async def _body(receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def _answer(send, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    body = await _body(receive)
    hold = parse_qs(scope["query_string"].decode()).get("hold_ms")
    if hold:
        time.sleep(float(hold[0]) / 1000)  # this app serves one client at a time
    await _answer(send, body)


_engine = None
_compiled: dict[str, object] = {}


async def engine_app(scope, receive, send) -> None:
    """Runs a `/v1/generate` body on the engine (compiled once per body) and answers the text."""
    global _engine
    if scope["type"] != "http":
        return
    from ananke.constraints import CompileLimits, compile_constraints
    from ananke.engines.llamacpp import LlamaCppEngine
    from ananke.wire import GenerateBody

    body = await _body(receive)
    request = GenerateBody.model_validate_json(body).to_request()
    key = body.decode()
    if key not in _compiled:
        _compiled[key] = compile_constraints(request.constraints_ir, CompileLimits())
    _engine = _engine or LlamaCppEngine(None)
    async for item in _engine.stream(request, _compiled[key], deltas=False):
        text = item.text
    await _answer(send, json.dumps({"text": text}).encode())
