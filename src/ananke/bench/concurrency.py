"""concurrency: 1, 4 and 8 requests in flight, in process and through `ananke serve`.

The same 8 JSON-constrained requests are sent with at most c of them in flight, for c in 1, 4, 8:
aggregate tok/s = tokens generated ÷ wall time of the 8, and the latency of each request. Two
workloads: distinct maskbench schemas (the schema sits in the prompt, so prompt processing weighs
heavily; the target row) and one small schema with short prompts (decoding dominates). Workloads,
levels and paths alternate within each round, so noise hits all of them.
"""

from __future__ import annotations

import asyncio
import json
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
WORKLOADS = ("maskbench", "short_prompt")
SHORT_SCHEMA = json.dumps({
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "city": {"type": "string"}},
    "required": ["name", "age", "city"],
})  # fmt: skip


def short_requests(max_tokens: int) -> list:
    """Decode-bound requests: a three-field schema (a short prompt) and 8 distinct questions."""
    from ananke import PyConstraintIR, PyGenerationRequest

    return [
        PyGenerationRequest(f"Describe member number {i + 1} of a town council.",
                            [PyConstraintIR("person", json_schema=SHORT_SCHEMA)], max_tokens, 0.0)
        for i in range(REQUESTS)
    ]  # fmt: skip


async def one_level(client, requests, level: int) -> dict:
    gate = asyncio.Semaphore(level)
    latencies: list[float] = []
    tokens, valid, prompt_tokens = 0, 0, 0

    async def one(request):
        nonlocal tokens, valid, prompt_tokens
        async with gate:
            start = time.perf_counter()
            response = await client.generate(request)
            latencies.append((time.perf_counter() - start) * 1000)
            tokens += response.metadata.tokens_generated
            prompt_tokens += response.metadata.prompt_tokens
            valid += response.validation.all_satisfied

    start = time.perf_counter()
    await asyncio.gather(*[one(r) for r in requests])
    wall = time.perf_counter() - start
    return {"level": level, "wall_s": round(wall, 3), "tokens": tokens, "valid": valid,
            "prompt_tokens": prompt_tokens, "latencies_ms": [round(x, 1) for x in latencies]}  # fmt: skip


async def measure(url: str, workloads: dict, rounds: int, advance, warm_up: bool) -> list[dict]:
    from ananke import Ananke

    clients = {"in_process": Ananke("local"), "service": Ananke(url)}
    try:
        return await measure_with(clients, workloads, rounds, advance, warm_up)
    finally:
        await clients["service"].aclose()  # in this event loop, which its connections belong to


async def measure_with(clients: dict, workloads: dict, rounds: int, advance, warm_up: bool) -> list[dict]:
    samples = []
    for client in clients.values():  # warm-up: model load, compile caches, prompt prefixes
        for requests in workloads.values():
            await one_level(client, requests if warm_up else requests[:1], max(LEVELS))
    for r in range(rounds):
        for workload, requests in workloads.items():
            for path, client in clients.items():
                levels = LEVELS if r % 2 == 0 else LEVELS[::-1]
                for level in levels:
                    sample = await one_level(client, requests, level)
                    samples.append({"round": r, "workload": workload, "path": path, **sample})
                    advance()
    return samples


def summarise(samples: list[dict], workload: str) -> dict:
    summary: dict = {}
    for path in ("in_process", "service"):
        per_level = {}
        for level in LEVELS:
            mine = [s for s in samples if (s["workload"], s["path"], s["level"]) == (workload, path, level)]
            tokens, wall = sum(s["tokens"] for s in mine), sum(s["wall_s"] for s in mine)
            latencies = [x for s in mine for x in s["latencies_ms"]]
            per_level[str(level)] = {
                "aggregate_tok_s": round(tokens / wall, 1) if wall else 0.0,
                "p50_ms": round(pct(latencies, 50), 1),
                "p99_ms": round(pct(latencies, 99), 1),
                "valid": sum(s["valid"] for s in mine),
                "requests": REQUESTS * len(mine),
                "mean_prompt_tokens": round(sum(s["prompt_tokens"] for s in mine) / (REQUESTS * len(mine))),
                "mean_tokens": round(tokens / (REQUESTS * len(mine)), 1),
            }
        per_level["gain_8_over_1"] = ratio(
            per_level["8"]["aggregate_tok_s"], per_level["1"]["aggregate_tok_s"]
        )
        summary[path] = per_level
    return summary


def run(ctx: BenchContext) -> dict:
    from ananke.bench.serve import ananke_serve
    from ananke.engines.llamacpp import settings_from_env

    rounds, max_tokens = (1, 24) if ctx.quick else (3, 64)
    tasks = maskbench_tasks(ctx.need("maskbench"), 3 * REQUESTS, compiling_only=True)
    if ctx.quick:  # the shortest schemas: prompt processing dominates a smoke run
        tasks = sorted(tasks, key=lambda t: len(t.schema))
    workloads = {
        "maskbench": [t.request(max_tokens) for t in tasks[:REQUESTS]],
        "short_prompt": short_requests(max_tokens),
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        ananke_serve(log_path=Path(tmp) / "server.log") as url,
        progress("concurrency", rounds * len(workloads) * 2 * len(LEVELS)) as advance,
    ):
        samples = asyncio.run(measure(url, workloads, rounds, advance, not ctx.quick))

    # The maskbench workload is the target's; the short-prompt one shows what decoding alone gains.
    summary: dict = summarise(samples, "maskbench") | {"short_prompt": summarise(samples, "short_prompt")}
    settings = {"levels": LEVELS, "requests_per_level": REQUESTS, "rounds": rounds, "max_tokens": max_tokens,
                "temperature": 0.0, "engine_slots": settings_from_env().slots, "workloads": WORKLOADS,
                "short_prompt_schema": SHORT_SCHEMA}  # fmt: skip
    report = write_report(ctx, "concurrency", settings, summary, {"samples": samples})
    write_markdown(ctx, report)
    return {
        f"{w}/{p}": {"gain_8_over_1": x["gain_8_over_1"]}
        | {f"tok_s_{k}": x[k]["aggregate_tok_s"] for k in "148"}
        for w, paths in (("maskbench", summary), ("short_prompt", summary["short_prompt"]))
        for p, x in paths.items() if p != "short_prompt"
    }  # fmt: skip


def write_markdown(ctx: BenchContext, report: dict) -> None:
    s, settings = report["summary"], report["settings"]
    by_workload = {"maskbench": s, "short_prompt": s["short_prompt"]}
    styles = {"in_process": ("#4477aa", "o"), "service": ("#cc6677", "s")}

    def draw(plt):
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        for workload, line in (("maskbench", "-"), ("short_prompt", "--")):
            for path, (color, marker) in styles.items():
                values = [by_workload[workload][path][str(c)]["aggregate_tok_s"] for c in LEVELS]
                ax.plot(LEVELS, values, marker + line, color=color, label=f"{workload}, {path}")
        ax.set_xticks(LEVELS)
        ax.set_xlabel("requests in flight")
        ax.set_ylabel("aggregate tok/s")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
        return fig

    rows = []
    for workload, paths in by_workload.items():
        for path in ("in_process", "service"):
            for level in LEVELS:
                x = paths[path][str(level)]
                valid = f"{x['valid']}/{x['requests']}"
                rows.append([workload, path, level, x["mean_prompt_tokens"], x["mean_tokens"],
                             x["aggregate_tok_s"], x["p50_ms"], x["p99_ms"], valid])  # fmt: skip
            gain = paths[path]["gain_8_over_1"]
            note = f"target >= 1.3: {target_note(gain, 1.3)}" if workload == "maskbench" else "(context)"
            rows.append([workload, path, "8 ÷ 1", "", "", gain, "", "", note])
    text = header(
        ctx, report, f"{', '.join(map(str, LEVELS))} requests in flight, in process and via the service"
    )
    text += f"""
{settings["requests_per_level"]} JSON-constrained requests per level, max_tokens {settings["max_tokens"]},
temperature 0, {settings["rounds"]} round(s), two workloads: **maskbench** (8 distinct maskbench
schemas; the schema is part of the prompt, so prompt processing weighs heavily — the target's
workload) and **short_prompt** (one three-field schema, 8 short questions; decoding dominates).
tok/s counts generated tokens over the wall time of the 8. The engine decodes up to
{settings["engine_slots"]} sequences together (ANANKE_LOCAL_SLOTS), so at 8 in flight the rest
queue. The service is `ananke serve` in its own process on 127.0.0.1.

{
        table(
            [
                "workload",
                "path",
                "in flight",
                "prompt tokens",
                "tokens out",
                "aggregate tok/s",
                "p50 ms",
                "p99 ms",
                "valid",
            ],
            rows,
        )
    }
{save_plot(ctx, "concurrency", draw)}"""
    update_results_md(ctx, "concurrency", text)
