"""service: latency of a short JSON generation in-process vs through the HTTP service.

Starts `ananke serve` on a free loopback port (its own process, same model) and two bare apps
(ananke.bench.echo: uvicorn, no framework): an echo, and the same engine answering the generate
body with nothing around it. Then alternates, per round: the request in-process, through the
`Ananke` HTTP client, as a raw httpx POST of the same wire body (the server's part without the
client's), that POST to the bare engine (the floor of an engine behind HTTP here), and a bare
loopback POST of that body to the echo (the floor of any HTTP hop); each timed on its second call
in a row (steady state). Reports p50/p99 of each, the overhead (service − in-process), that
overhead above the bare POST and above the bare engine. `--quick`: 10 rounds (else 50).
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
def bare_server(app: str, ready_body: bytes):
    """A bare app of ananke.bench.echo under uvicorn on a free loopback port; yields its URL once
    it answers `ready_body` (the engine app loads its model on that first request)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"ananke.bench.echo:{app}", "--port", str(port),
         "--log-level", "warning"]
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # bounded: 60 s
            try:
                httpx.post(url, content=ready_body, timeout=60).raise_for_status()
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


def wire_body() -> bytes:
    return (
        GenerateBody.from_request(REQUEST, stream=False, timeout_secs=120)
        .model_dump_json(exclude_none=True)
        .encode()
    )


async def measure(n: int, url: str, engine_url: str, echo_url: str) -> dict:
    local, remote = Ananke("local"), Ananke(url)
    body = wire_body()
    samples: dict[str, list[float]] = {
        "in_process_ms": [],
        "service_ms": [],
        "raw_post_ms": [],
        "bare_engine_ms": [],
        "bare_post_ms": [],
        "held_post_ms": [],  # the echo held as long as an in-process generation
    }
    async with httpx.AsyncClient(timeout=120) as http:
        paths = {
            "in_process_ms": lambda: timed(local),
            "service_ms": lambda: timed(remote),
            "raw_post_ms": lambda: post_ms(http, f"{url}/v1/generate", body),
            "bare_engine_ms": lambda: post_ms(http, engine_url, body),
            "bare_post_ms": lambda: post_ms(http, echo_url, body),
            "held_post_ms": lambda: post_ms(http, f"{echo_url}/?hold_ms={hold_ms}", body),
        }
        hold_ms = pct([await timed(local) for _ in range(5)], 50)  # an in-process generation's time
        order = list(paths)
        with progress("service", n) as advance:
            for round_ in range(n):
                # each round starts at the next path: the one before a path leaves its mark (its
                # engine's threads spin on for a while, taking a core), so every path follows
                # every other equally often
                for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                    # a call of the same kind first, not timed (steady state)
                    await paths[name]()
                    samples[name].append(await paths[name]())
                advance()
    await remote.aclose()
    return samples, hold_ms


def paired_p50(a: list[float], b: list[float]) -> float:
    """The median of per-round differences a − b (noise of the moment hits both)."""
    return round(pct([x - y for x, y in zip(a, b, strict=True)], 50), 3)


def run(ctx: BenchContext) -> dict:
    n = 10 if ctx.quick else FULL_REQUESTS
    with (
        tempfile.TemporaryDirectory() as tmp,
        ananke_serve(log_path=Path(tmp) / "server.log") as url,
        bare_server("engine_app", wire_body()) as engine_url,
        bare_server("app", b"{}") as echo_url,
    ):
        samples, hold_ms = asyncio.run(measure(n, url, engine_url, echo_url))
    local, remote = samples["in_process_ms"], samples["service_ms"]
    raw, bare = samples["raw_post_ms"], samples["bare_post_ms"]
    bare_engine = samples["bare_engine_ms"]
    # the held echo's cost beyond its hold: the floor of a hop around a job this long
    held = [h - hold_ms for h in samples["held_post_ms"]]
    overhead = [x - y for x, y in zip(remote, local, strict=True)]
    summary = {
        **{f"{k.removesuffix('_ms')}_p50_ms": round(pct(v, 50), 3) for k, v in samples.items()},
        **{f"{k.removesuffix('_ms')}_p99_ms": round(pct(v, 99), 3) for k, v in samples.items()},
        "overhead_p50_ms": paired_p50(remote, local),
        "server_part_p50_ms": paired_p50(raw, local),  # server + transport, no client
        "bare_engine_over_in_process_p50_ms": paired_p50(bare_engine, local),
        "overhead_above_bare_engine_p50_ms": paired_p50(remote, bare_engine),
        "server_above_bare_engine_p50_ms": paired_p50(raw, bare_engine),
        "overhead_above_bare_post_p50_ms": round(
            pct([o - b for o, b in zip(overhead, bare, strict=True)], 50), 3
        ),
        "held_post_beyond_hold_p50_ms": round(pct(held, 50), 3),
        "overhead_above_held_post_p50_ms": round(
            pct([o - h for o, h in zip(overhead, held, strict=True)], 50), 3
        ),
    }
    settings = {
        "rounds": n,
        "max_tokens": 16,
        "schema": SCHEMA,
        "wire_body_bytes": len(wire_body()),
        "echo_hold_ms": round(hold_ms, 3),
    }
    samples = {k: [round(v, 3) for v in vs] for k, vs in samples.items()}
    report = write_report(ctx, "service", settings, summary, {"samples": samples})
    s = summary
    update_results_md(
        ctx,
        "service",
        header(ctx, report, f"in-process vs HTTP service, {n} rounds of a short JSON generation")
        + f"""
Per round, each path in turn, starting one path later each round: `Ananke("local")`;
`Ananke(url)` against `ananke serve` on 127.0.0.1 (own process, same model); a raw httpx POST of
the same wire body to `/v1/generate`; that POST to a bare engine app (the same engine under
uvicorn, no framework, validation or admission: the floor of an engine behind HTTP here); a bare
loopback POST of that body ({settings["wire_body_bytes"]} bytes) to an echo app under uvicorn —
the floor of any HTTP hop — and the same POST with the echo holding its answer as long as an
in-process generation ({settings["echo_hold_ms"]} ms). Each path is timed on its second call in a
row (steady state, as a user runs it). llama.cpp's threads spin for a while after a decode, taking
a core from the path after it; the rotation spreads that evenly. Temperature 0, max_tokens 16.
Differences are per round (median).

{
            table(
                ["path", "p50 ms", "p99 ms"],
                [
                    ["in-process", s["in_process_p50_ms"], s["in_process_p99_ms"]],
                    ["`Ananke` HTTP client → service", s["service_p50_ms"], s["service_p99_ms"]],
                    ["raw POST → service", s["raw_post_p50_ms"], s["raw_post_p99_ms"]],
                    ["raw POST → bare engine app", s["bare_engine_p50_ms"], s["bare_engine_p99_ms"]],
                    ["bare loopback POST (echo)", s["bare_post_p50_ms"], s["bare_post_p99_ms"]],
                    ["echo held as long as in-process", s["held_post_p50_ms"], s["held_post_p99_ms"]],
                ],
            )
        }
Overhead of the service over in-process: **{s["overhead_p50_ms"]} ms** p50 (target ≤ 1.5 ms:
{target_note(s["overhead_p50_ms"], 1.5, higher_is_better=False)}); above the bare POST:
**{s["overhead_above_bare_post_p50_ms"]} ms** (target ≤ 0.3 ms:
{target_note(s["overhead_above_bare_post_p50_ms"], 0.3, higher_is_better=False)}). The server's part
alone (raw POST − in-process): {s["server_part_p50_ms"]} ms.

Floors: the echo costs {s["bare_post_p50_ms"]} ms back to back but
**{s["held_post_beyond_hold_p50_ms"]} ms** beyond its hold when held: where idle CPUs are slow to
wake (this VM), a hop around a job of tens of milliseconds pays more than a back-to-back one,
engine or not. The bare engine app costs {s["bare_engine_over_in_process_p50_ms"]} ms over
in-process. The service's overhead above the held echo: **{s["overhead_above_held_post_p50_ms"]}
ms**. Above the bare engine app: the service alone **{s["server_above_bare_engine_p50_ms"]} ms**
(framework, checks, admission, cache), the `Ananke` client through it
**{s["overhead_above_bare_engine_p50_ms"]} ms** (plus its wire body, parsing and output checks).
""",
    )
    return summary
