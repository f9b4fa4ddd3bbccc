"""service: latency of a short JSON generation in-process vs through the HTTP service.

Starts `ananke serve` on a free loopback port (its own process, same model), then alternates
the same request in-process and over HTTP, and reports p50/p99 of each and the difference.
`--quick`: 10 requests each way (else 50).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from ananke import Ananke, PyConstraintIR, PyGenerationRequest
from ananke.bench.common import BenchContext, pct, progress, update_results_md, write_report
from ananke.bench.serve import ananke_serve

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


async def measure(n: int, url: str) -> dict:
    local, remote = Ananke("local"), Ananke(url)
    await timed(local), await timed(remote)  # warm-up: model load, compile caches
    samples: dict[str, list[float]] = {"in_process_ms": [], "service_ms": []}
    with progress("service", n) as advance:
        for _ in range(n):
            samples["in_process_ms"].append(await timed(local))
            samples["service_ms"].append(await timed(remote))
            advance()
    await remote.aclose()
    return samples


def run(ctx: BenchContext) -> dict:
    n = 10 if ctx.quick else FULL_REQUESTS
    with tempfile.TemporaryDirectory() as tmp, ananke_serve(log_path=Path(tmp) / "server.log") as url:
        samples = asyncio.run(measure(n, url))
    local, remote = samples["in_process_ms"], samples["service_ms"]
    summary = {
        "in_process_p50_ms": round(pct(local, 50), 2),
        "in_process_p99_ms": round(pct(local, 99), 2),
        "service_p50_ms": round(pct(remote, 50), 2),
        "service_p99_ms": round(pct(remote, 99), 2),
        "overhead_p50_ms": round(pct(remote, 50) - pct(local, 50), 2),
    }
    settings = {"requests_each_way": n, "max_tokens": 16, "schema": SCHEMA}
    samples = {k: [round(v, 2) for v in vs] for k, vs in samples.items()}
    report = write_report(ctx, "service", settings, summary, {"samples": samples})
    update_results_md(
        ctx,
        "service",
        f"""## service — in-process vs HTTP service, {n} short JSON generations each way

Run {report["when"]} on {report["machine"]["cores"]} cores; the same request alternated between
`Ananke("local")` and `ananke serve` on 127.0.0.1 (own process, same model), temperature 0.

| path | p50 ms | p99 ms |
|---|---|---|
| in-process | {summary["in_process_p50_ms"]} | {summary["in_process_p99_ms"]} |
| HTTP service | {summary["service_p50_ms"]} | {summary["service_p99_ms"]} |
| overhead (p50 difference) | {summary["overhead_p50_ms"]} | target <= 3 ms |
""",
    )
    return summary
