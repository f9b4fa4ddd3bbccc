"""Service overhead: latency of a short JSON generation in-process vs through the HTTP service.

Starts `ananke serve` on a free loopback port (its own process, same model), then alternates
the same request in-process and over HTTP, and reports p50/p99 of each and the difference.

    python benchmarks/service.py [--quick] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, pct, update_results_md, write_json

from ananke import Ananke, PyConstraintIR, PyGenerationRequest
from tests.servers import ananke_serve

SCHEMA = (
    '{"type": "object", "properties": {"green": {"type": "boolean"}}, "required": ["green"], '
    '"additionalProperties": false}'
)
REQUEST = PyGenerationRequest(
    "Is the build green? Answer as JSON.", [PyConstraintIR("flag", json_schema=SCHEMA)], 16, 0.0
)


async def timed(client: Ananke) -> float:
    started = time.perf_counter()
    response = await client.generate(REQUEST)
    if not response.validation.all_satisfied:
        raise SystemExit(f"unexpected invalid output: {response.validation}")
    return (time.perf_counter() - started) * 1000


async def run(n: int, url: str) -> dict:
    local, remote = Ananke("local"), Ananke(url)
    await timed(local), await timed(remote)  # warm-up: model load, compile caches
    samples: dict[str, list[float]] = {"in_process_ms": [], "service_ms": []}
    with Progress(transient=True) as progress:
        bar = progress.add_task("service", total=n)
        for _ in range(n):
            samples["in_process_ms"].append(await timed(local))
            samples["service_ms"].append(await timed(remote))
            progress.advance(bar)
    await remote.aclose()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 requests each way")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    n = 10 if args.quick else args.requests
    with tempfile.TemporaryDirectory() as tmp, ananke_serve(log_path=Path(tmp) / "server.log") as url:
        samples = asyncio.run(run(n, url))
    local, remote = samples["in_process_ms"], samples["service_ms"]
    summary = {
        "in_process_p50_ms": round(pct(local, 50), 2),
        "in_process_p99_ms": round(pct(local, 99), 2),
        "service_p50_ms": round(pct(remote, 50), 2),
        "service_p99_ms": round(pct(remote, 99), 2),
        "overhead_p50_ms": round(pct(remote, 50) - pct(local, 50), 2),
    }
    report = {
        "suite": "service",
        "quick": args.quick,
        **environment(),
        "settings": {"requests_each_way": n, "max_tokens": 16, "schema": SCHEMA},
        "summary": summary,
        "samples": {k: [round(v, 2) for v in vs] for k, vs in samples.items()},
    }
    write_json("service-quick" if args.quick else "service", report)
    print(json.dumps(summary, indent=1))
    if not args.quick:
        update_results_md(
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


if __name__ == "__main__":
    main()
