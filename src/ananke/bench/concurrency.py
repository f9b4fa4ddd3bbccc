"""concurrency: 1, 4 and 8 requests in flight, in process and through `ananke serve`.

The same 8 JSON-constrained requests (distinct maskbench schemas) are sent with at most c of them
in flight, for c in 1, 4, 8: aggregate tok/s = tokens generated ÷ wall time of the 8, and the
latency of each request. Levels and paths alternate within each round, so noise hits all of them.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from ananke.bench.common import (
    BenchContext,
    header,
    pct,
    progress,
    ratio,
    save_plot,
    table,
    target_note,
    update_results_md,
    write_report,
)
from ananke.bench.tasks import maskbench_tasks

LEVELS = (1, 4, 8)
REQUESTS = 8


async def one_level(client, requests, level: int) -> dict:
    gate = asyncio.Semaphore(level)
    latencies: list[float] = []
    tokens, valid = 0, 0

    async def one(request):
        nonlocal tokens, valid
        async with gate:
            start = time.perf_counter()
            response = await client.generate(request)
            latencies.append((time.perf_counter() - start) * 1000)
            tokens += response.metadata.tokens_generated
            valid += response.validation.all_satisfied

    start = time.perf_counter()
    await asyncio.gather(*[one(r) for r in requests])
    wall = time.perf_counter() - start
    return {"level": level, "wall_s": round(wall, 3), "tokens": tokens, "valid": valid,
            "latencies_ms": [round(x, 1) for x in latencies]}  # fmt: skip


async def measure(url: str, requests, rounds: int, advance, warm_up: bool) -> list[dict]:
    from ananke import Ananke

    clients = {"in_process": Ananke("local"), "service": Ananke(url)}
    try:
        return await measure_with(clients, requests, rounds, advance, warm_up)
    finally:
        await clients["service"].aclose()  # in this event loop, which its connections belong to


async def measure_with(clients: dict, requests, rounds: int, advance, warm_up: bool) -> list[dict]:
    samples = []
    for client in clients.values():  # warm-up: model load, compile caches, prompt prefixes
        await one_level(client, requests if warm_up else requests[:1], max(LEVELS))
    for r in range(rounds):
        for path, client in clients.items():
            levels = LEVELS if r % 2 == 0 else LEVELS[::-1]
            for level in levels:
                samples.append({"round": r, "path": path, **await one_level(client, requests, level)})
                advance()
    return samples


def run(ctx: BenchContext) -> dict:
    from ananke.bench.serve import ananke_serve
    from ananke.engines.llamacpp import settings_from_env

    rounds, max_tokens = (1, 8) if ctx.quick else (3, 64)
    tasks = maskbench_tasks(ctx.need("maskbench"), 3 * REQUESTS, compiling_only=True)
    if ctx.quick:  # the shortest schemas: prompt processing dominates a smoke run
        tasks = sorted(tasks, key=lambda t: len(t.schema))
    requests = [t.request(max_tokens) for t in tasks[:REQUESTS]]
    with (
        tempfile.TemporaryDirectory() as tmp,
        ananke_serve(log_path=Path(tmp) / "server.log") as url,
        progress("concurrency", rounds * 2 * len(LEVELS)) as advance,
    ):
        samples = asyncio.run(measure(url, requests, rounds, advance, not ctx.quick))

    summary: dict = {}
    for path in ("in_process", "service"):
        per_level = {}
        for level in LEVELS:
            mine = [s for s in samples if s["path"] == path and s["level"] == level]
            tokens, wall = sum(s["tokens"] for s in mine), sum(s["wall_s"] for s in mine)
            latencies = [x for s in mine for x in s["latencies_ms"]]
            per_level[str(level)] = {
                "aggregate_tok_s": round(tokens / wall, 1) if wall else 0.0,
                "p50_ms": round(pct(latencies, 50), 1),
                "p99_ms": round(pct(latencies, 99), 1),
                "valid": sum(s["valid"] for s in mine),
                "requests": REQUESTS * len(mine),
            }
        per_level["gain_8_over_1"] = ratio(
            per_level["8"]["aggregate_tok_s"], per_level["1"]["aggregate_tok_s"]
        )
        summary[path] = per_level
    settings = {"levels": LEVELS, "requests_per_level": REQUESTS, "rounds": rounds, "max_tokens": max_tokens,
                "temperature": 0.0, "engine_slots": settings_from_env().slots}  # fmt: skip
    report = write_report(ctx, "concurrency", settings, summary, {"samples": samples})
    write_markdown(ctx, report)
    return {p: {"gain_8_over_1": s["gain_8_over_1"]} | {f"tok_s_{k}": s[k]["aggregate_tok_s"] for k in "148"}
            for p, s in summary.items()}  # fmt: skip


def write_markdown(ctx: BenchContext, report: dict) -> None:
    s, settings = report["summary"], report["settings"]

    def draw(plt):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for path, color in [("in_process", "#4477aa"), ("service", "#cc6677")]:
            ax.plot(
                LEVELS, [s[path][str(c)]["aggregate_tok_s"] for c in LEVELS], "o-", color=color, label=path
            )
        ax.set_xticks(LEVELS)
        ax.set_xlabel("requests in flight")
        ax.set_ylabel("aggregate tok/s")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        return fig

    rows = []
    for path in ("in_process", "service"):
        for level in LEVELS:
            x = s[path][str(level)]
            rows.append(
                [path, level, x["aggregate_tok_s"], x["p50_ms"], x["p99_ms"], f"{x['valid']}/{x['requests']}"]
            )
        gain = s[path]["gain_8_over_1"]
        rows.append([path, "8 ÷ 1", gain, "", "", f"target >= 1.3: {target_note(gain, 1.3)}"])
    text = header(
        ctx, report, f"{', '.join(map(str, LEVELS))} requests in flight, in process and via the service"
    )
    text += f"""
The same {settings["requests_per_level"]} JSON-constrained requests (distinct maskbench schemas),
max_tokens {settings["max_tokens"]}, temperature 0, {settings["rounds"]} round(s); the engine
decodes up to {settings["engine_slots"]} sequences together (ANANKE_LOCAL_SLOTS), so at 8 in
flight the rest queue. The service is `ananke serve` in its own process on 127.0.0.1.

{table(["path", "in flight", "aggregate tok/s", "p50 ms", "p99 ms", "valid"], rows)}
{save_plot(ctx, "concurrency", draw)}"""
    update_results_md(ctx, "concurrency", text)
