"""service: latency of a short JSON generation in-process vs through the HTTP service.

Starts `ananke serve` on a free loopback port (its own process, same model) and a bare echo
server (ananke.bench.echo: uvicorn, no framework), then alternates, per round: the request
in-process, through the `Ananke` HTTP client, as a raw httpx POST of the same wire body (the
server's part without the client's), and a bare loopback POST of that body to the echo server
(the floor any HTTP hop costs here); each timed on its second call in a row (steady state).
Reports p50/p99 of each, the overhead (service − in-process) and that overhead above the bare POST.
`--quick`: 10 rounds (else 50).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from ananke import Ananke, PyConstraintIR, PyGenerationRequest
from ananke.bench.common import (
    BenchContext,
    header,
    pct,
    progress,
    table,
    target_note,
    update_results_md,
    write_report,
)
from ananke.bench.serve import ananke_serve, free_port
from ananke.wire import GenerateBody

SCHEMA = (
    '{"type": "object", "properties": {"green": {"type": "boolean"}}, "required": ["green"], '
    '"additionalProperties": false}'
)
REQUEST = PyGenerationRequest(
    "Is the build green? Answer as JSON.", [PyConstraintIR("flag", json_schema=SCHEMA)], 16, 0.0
)
FULL_REQUESTS = 50


async def timed(client: Ananke) -> float:
    started = time.perf_counter()
    response = await client.generate(REQUEST)
    if not response.validation.all_satisfied:
        raise SystemExit(f"unexpected invalid output: {response.validation}")
    return (time.perf_counter() - started) * 1000


@contextmanager
def echo_server():
    """The bare echo app under uvicorn on a free loopback port; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "ananke.bench.echo:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # bounded: 30 s
            try:
                httpx.post(url, content=b"{}", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def post_ms(http: httpx.AsyncClient, url: str, body: bytes) -> float:
    started = time.perf_counter()
    response = await http.post(url, content=body, headers={"content-type": "application/json"})
    response.raise_for_status()
    response.json()
    return (time.perf_counter() - started) * 1000


async def measure(n: int, url: str, echo_url: str) -> dict:
    local, remote = Ananke("local"), Ananke(url)
    wire = GenerateBody.from_request(REQUEST, stream=False, timeout_secs=120).model_dump_json(
        exclude_none=True
    )
    body = wire.encode()
    samples: dict[str, list[float]] = {
        "in_process_ms": [],
        "service_ms": [],
        "raw_post_ms": [],
        "bare_post_ms": [],
    }
    async with httpx.AsyncClient(timeout=120) as http:
        paths = {
            "in_process_ms": lambda: timed(local),
            "service_ms": lambda: timed(remote),
            "raw_post_ms": lambda: post_ms(http, f"{url}/v1/generate", body),
            "bare_post_ms": lambda: post_ms(http, echo_url, body),
        }
        with progress("service", n) as advance:
            for _ in range(n):
                for name, call in paths.items():
                    # a call of the same kind first, not timed: llama.cpp's threads spin for a while
                    # after a decode, so the call right after the other process's (or the
                    # in-process engine's) decode would pay ~1 ms for them
                    await call()
                    samples[name].append(await call())
                advance()
    await remote.aclose()
    return samples


def paired_p50(a: list[float], b: list[float]) -> float:
    """The median of per-round differences a − b (rounds alternate, so noise hits both)."""
    return round(pct([x - y for x, y in zip(a, b, strict=True)], 50), 3)


def run(ctx: BenchContext) -> dict:
    n = 10 if ctx.quick else FULL_REQUESTS
    with (
        tempfile.TemporaryDirectory() as tmp,
        ananke_serve(log_path=Path(tmp) / "server.log") as url,
        echo_server() as echo_url,
    ):
        samples = asyncio.run(measure(n, url, echo_url))
    local, remote = samples["in_process_ms"], samples["service_ms"]
    raw, bare = samples["raw_post_ms"], samples["bare_post_ms"]
    overhead = [x - y for x, y in zip(remote, local, strict=True)]
    summary = {
        **{f"{k.removesuffix('_ms')}_p50_ms": round(pct(v, 50), 3) for k, v in samples.items()},
        **{f"{k.removesuffix('_ms')}_p99_ms": round(pct(v, 99), 3) for k, v in samples.items()},
        "overhead_p50_ms": paired_p50(remote, local),
        "server_part_p50_ms": paired_p50(raw, local),  # server + transport, no client
        "overhead_above_bare_post_p50_ms": round(
            pct([o - b for o, b in zip(overhead, bare, strict=True)], 50), 3
        ),
    }
    settings = {
        "rounds": n,
        "max_tokens": 16,
        "schema": SCHEMA,
        "wire_body_bytes": len(
            GenerateBody.from_request(REQUEST, stream=False, timeout_secs=120).model_dump_json(
                exclude_none=True
            )
        ),
    }
    samples = {k: [round(v, 3) for v in vs] for k, vs in samples.items()}
    report = write_report(ctx, "service", settings, summary, {"samples": samples})
    s = summary
    update_results_md(
        ctx,
        "service",
        header(ctx, report, f"in-process vs HTTP service, {n} rounds of a short JSON generation")
        + f"""
Per round, alternated: `Ananke("local")`; `Ananke(url)` against `ananke serve` on 127.0.0.1 (own
process, same model); a raw httpx POST of the same wire body to `/v1/generate`; a bare loopback
POST of that body ({settings["wire_body_bytes"]} bytes) to an echo app under uvicorn (no framework) —
the floor of any HTTP hop here. Each path is timed on its second call in a row (steady state, as a
user runs it): llama.cpp's threads spin for a while after a decode, and the first call after the
other engine's decode pays ~1 ms for them. Temperature 0, max_tokens 16. Differences are per round
(median).

{
            table(
                ["path", "p50 ms", "p99 ms"],
                [
                    ["in-process", s["in_process_p50_ms"], s["in_process_p99_ms"]],
                    ["`Ananke` HTTP client → service", s["service_p50_ms"], s["service_p99_ms"]],
                    ["raw POST → service", s["raw_post_p50_ms"], s["raw_post_p99_ms"]],
                    ["bare loopback POST (echo)", s["bare_post_p50_ms"], s["bare_post_p99_ms"]],
                ],
            )
        }
Overhead of the service over in-process: **{s["overhead_p50_ms"]} ms** p50 (target ≤ 1.5 ms:
{target_note(s["overhead_p50_ms"], 1.5, higher_is_better=False)}); above the bare POST:
**{s["overhead_above_bare_post_p50_ms"]} ms** (target ≤ 0.3 ms:
{target_note(s["overhead_above_bare_post_p50_ms"], 0.3, higher_is_better=False)}). The server's part
alone (raw POST − in-process): {s["server_part_p50_ms"]} ms.
""",
    )
    return summary
