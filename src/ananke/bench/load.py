"""load: a bounded load run, N mixed requests at concurrency C against `ananke serve` on 127.0.0.1.

Mix: JSON, regex, grammar and unconstrained generations, plus invalid requests (a bad regex, a
bad field). Every request must get exactly one answer — a success or a typed 4xx — with no
5xx and no hang. Reports status counts, p50/p99 latency and the server's memory before/after.
200 requests at concurrency 16 (`--quick`: 40).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from ananke.bench.common import BenchContext, pct, progress, update_results_md, write_report
from ananke.bench.serve import ananke_serve

BOUNDED_JSON = (
    '{"type": "object", "properties": {"ok": {"type": "boolean"}, "code": {"type": "integer", '
    '"minimum": 0, "maximum": 999}}, "required": ["ok", "code"], "additionalProperties": false}'
)
GRAMMAR = 'start: "def add(a, b):\\n    return " NAME ("+" NAME)? "\\n"\nNAME: /[a-z]{1,8}/'

# kind → (request body, statuses that are a correct answer)
KINDS: dict[str, tuple[dict, set[int]]] = {
    "json": ({"prompt": "Report the build as JSON.",
              "constraints": [{"name": "j", "json_schema": BOUNDED_JSON}]}, {200}),
    "regex": ({"prompt": "What year is it?",
               "constraints": [{"name": "r", "regex_patterns": ["[0-9]{4}"]}]}, {200}),
    "grammar": ({"prompt": "Write add(a, b).", "constraints": [{"name": "g", "grammar": GRAMMAR}]}, {200}),
    "unconstrained": ({"prompt": "Say hello in one sentence."}, {200}),
    "invalid_regex": ({"prompt": "x", "constraints": [{"name": "bad", "regex_patterns": ["a("]}]}, {400}),
    "invalid_field": ({"prompt": "x", "max_tokens": 0, "extra": True}, {422}),
}  # fmt: skip
MIX = ["json", "json", "regex", "regex", "grammar", "unconstrained", "unconstrained", "json",
       "invalid_regex", "invalid_field"]  # fmt: skip


def memory_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/<pid>/status in MB (VmRSS: now, VmHWM: the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    return memory_mb(pid, "VmRSS")


async def run_load(url: str, n: int, concurrency: int, max_tokens: int = 24, progress=None) -> dict:
    """Send n requests, at most `concurrency` at a time; return per-request outcomes."""
    gate = asyncio.Semaphore(concurrency)
    outcomes: list[dict] = []

    async def one(i: int, http: httpx.AsyncClient) -> None:
        kind = MIX[i % len(MIX)]
        body, ok_statuses = KINDS[kind]
        body = {"max_tokens": max_tokens, "temperature": 0.0, **body}
        async with gate:
            started = time.perf_counter()
            try:
                response = await http.post("/v1/generate", json=body)
                status, error = response.status_code, None
            except httpx.HTTPError as exc:  # a hang-up or a timeout: counted, never lost
                status, error = 0, f"{type(exc).__name__}: {exc}"
            outcomes.append({
                "i": i, "kind": kind, "status": status, "correct": status in ok_statuses,
                "ms": round((time.perf_counter() - started) * 1000, 2), "error": error,
            })  # fmt: skip
            if progress is not None:
                progress()

    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await asyncio.gather(*[one(i, http) for i in range(n)])
    return {"outcomes": sorted(outcomes, key=lambda o: o["i"])}


def summarise(outcomes: list[dict], rss_before: float, rss_after: float, seconds: float) -> dict:
    latencies = [o["ms"] for o in outcomes if o["status"] == 200]
    return {
        "requests": len(outcomes),
        "answered": sum(1 for o in outcomes if o["status"]),
        "correct_answers": sum(o["correct"] for o in outcomes),
        "server_errors_5xx": sum(1 for o in outcomes if o["status"] >= 500),
        "statuses": dict(sorted(Counter(str(o["status"]) for o in outcomes).items())),
        "p50_ms": round(pct(latencies, 50), 1),
        "p99_ms": round(pct(latencies, 99), 1),
        "wall_s": round(seconds, 1),
        "server_rss_before_mb": round(rss_before, 1),
        "server_rss_after_mb": round(rss_after, 1),
    }


def run(ctx: BenchContext) -> dict:
    n, concurrency = (40 if ctx.quick else 200), 16
    with tempfile.TemporaryDirectory() as tmp, ananke_serve(log_path=Path(tmp) / "server.log") as url:
        asyncio.run(run_load(url, 10, 4))  # warm-up: caches, allocator
        before = rss_mb(url.process.pid)
        started = time.perf_counter()
        with progress("load", n) as advance:
            result = asyncio.run(run_load(url, n, concurrency, progress=advance))
        seconds = time.perf_counter() - started
        after = rss_mb(url.process.pid)
    summary = summarise(result["outcomes"], before, after, seconds)
    settings = {"requests": n, "concurrency": concurrency, "mix": MIX, "max_tokens": 24}
    report = write_report(ctx, "load", settings, summary, {"outcomes": result["outcomes"]})
    s = summary
    columns = {
        "requests": s["requests"], "answered": s["answered"], "correct status": s["correct_answers"],
        "5xx": s["server_errors_5xx"], "statuses": s["statuses"], "p50 ms (200s)": s["p50_ms"],
        "p99 ms": s["p99_ms"], "wall s": s["wall_s"],
        "server RSS MB before → after": f"{s['server_rss_before_mb']} → {s['server_rss_after_mb']}",
    }  # fmt: skip
    table = "\n".join(
        "| " + " | ".join(str(v) for v in row) + " |"
        for row in (columns.keys(), ["---"] * len(columns), columns.values())
    )
    update_results_md(
        ctx,
        "load",
        f"""## load — {n} mixed requests at concurrency {concurrency} against `ananke serve`

Run {report["when"]} on {report["machine"]["cores"]} cores, embedded model, max_tokens 24. Mix per 10
requests: 3 JSON, 2 regex, 1 grammar, 2 unconstrained, 1 invalid regex (400), 1 invalid field (422).

{table}
""",
    )
    return summary
