"""compile: compile time of every maskbench schema, failures by reason, cache-hit time.

Each schema is compiled cold with `compile_constraints` (no cache), then fetched through
`Ananke.compile_constraints` twice: the second call is the cache hit a repeated request sees.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter

from ananke.bench.common import (
    BenchContext,
    header,
    pct,
    progress,
    save_plot,
    table,
    target_note,
    update_results_md,
    write_report,
)
from ananke.bench.tasks import maskbench_files

QUICK_FILES = 200


def failure_reasons(reason: str) -> list[str]:
    """What a compile error is about: each unsupported keyword named, or the error's gist."""
    keywords = re.search(r"unsupported JSON Schema keyword\(s\): ([^(]+)", reason)
    if keywords:
        return [f"keyword {k.strip()}" for k in keywords.group(1).split(",") if k.strip()]
    gist = re.sub(r"^json_schema( of '[^']*')?: ", "", reason.split("\n")[0])
    return [gist[:90]]


async def cache_hit_ms(client, constraints) -> float:
    """Time of `Ananke.compile_constraints` on constraints it compiled a moment before."""
    await client.compile_constraints(constraints)  # fills the cache
    start = time.perf_counter()
    answer = await client.compile_constraints(constraints)
    elapsed = (time.perf_counter() - start) * 1000
    if not answer["cache_hit"]:
        raise RuntimeError("the second compile of the same constraints missed the cache")
    return elapsed


def run(ctx: BenchContext) -> dict:
    from ananke import Ananke, PyConstraintIR
    from ananke.constraints import compile_constraints
    from ananke.errors import ConstraintCompileError

    files = maskbench_files(ctx.need("maskbench"))
    if ctx.quick:
        files = files[:: max(1, len(files) // QUICK_FILES)]
    client = Ananke("local")
    rows, reasons, hits = [], Counter(), []
    loop = asyncio.new_event_loop()
    try:
        with progress("compile", len(files)) as advance:
            for path in files:
                schema = json.dumps(json.loads(path.read_text())["schema"])
                constraints = [PyConstraintIR("s", json_schema=schema)]
                start = time.perf_counter()
                try:
                    compile_constraints(constraints)
                    error = None
                except ConstraintCompileError as exc:
                    error = exc.reason
                ms = (time.perf_counter() - start) * 1000
                row = {"file": path.stem, "ms": round(ms, 3), "error": error}
                if error:
                    reasons.update(failure_reasons(error))
                elif len(hits) < 500:  # cache hits cost microseconds: a sample is plenty
                    hit_ms = loop.run_until_complete(cache_hit_ms(client, constraints))
                    hits.append(hit_ms)
                    row["cache_hit_ms"] = round(hit_ms, 4)
                rows.append(row)
                advance()
    finally:
        loop.close()

    ok = [r["ms"] for r in rows if r["error"] is None]
    failed = [r["ms"] for r in rows if r["error"] is not None]
    by_subset: dict[str, Counter] = {}
    for r in rows:
        counts = by_subset.setdefault(r["file"].split("---")[0], Counter())
        counts["schemas"] += 1
        counts["compiled" if r["error"] is None else "failed"] += 1
    summary = {
        "schemas": len(rows),
        "compiled": len(ok),
        "failed": len(failed),
        "compile_p50_ms": round(pct(ok, 50), 3),
        "compile_p99_ms": round(pct(ok, 99), 3),
        "compile_max_ms": round(max(ok, default=0.0), 3),
        "failed_p50_ms": round(pct(failed, 50), 3),
        "cache_hit_p50_ms": round(pct(hits, 50), 4),
        "cache_hit_p99_ms": round(pct(hits, 99), 4),
        "failure_reasons": dict(reasons.most_common()),
        "by_subset": {k: dict(v) for k, v in sorted(by_subset.items())},
    }
    settings = {"maskbench_files": len(files), "cache_hit_samples": len(hits)}
    report = write_report(ctx, "compile", settings, summary, {"rows": rows})
    write_markdown(ctx, report, ok)
    return {k: v for k, v in summary.items() if k not in ("failure_reasons", "by_subset")}


def write_markdown(ctx: BenchContext, report: dict, times: list[float]) -> None:
    s = report["summary"]

    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ordered = sorted(times)
        ax.plot(ordered, [i / len(ordered) for i in range(1, len(ordered) + 1)], color="#4477aa")
        ax.set_xscale("log")
        for value, label in [(2, "p50 target 2 ms"), (100, "p99 target 100 ms")]:
            ax.axvline(value, color="#cc3311", linestyle=":", label=label)
        ax.set_xlabel("compile time (ms, log scale)")
        ax.set_ylabel("share of compiled schemas")
        ax.legend(fontsize=8)
        return fig

    rows = [
        ["schemas", s["schemas"], "", ""],
        ["compiled", f"{s['compiled']} ({s['compiled'] / max(1, s['schemas']):.1%})", "", ""],
        ["compile p50", f"{s['compile_p50_ms']} ms", "<= 2 ms",
         target_note(s["compile_p50_ms"], 2, higher_is_better=False)],
        ["compile p99", f"{s['compile_p99_ms']} ms", "<= 100 ms",
         target_note(s["compile_p99_ms"], 100, higher_is_better=False)],
        ["compile max", f"{s['compile_max_ms']} ms", "", ""],
        ["time to refuse a schema, p50", f"{s['failed_p50_ms']} ms", "", ""],
        ["cache hit p50 / p99", f"{s['cache_hit_p50_ms']} / {s['cache_hit_p99_ms']} ms", "", ""],
    ]  # fmt: skip
    subsets = [[k, v["schemas"], v.get("compiled", 0), v.get("failed", 0)] for k, v in s["by_subset"].items()]
    reasons = [[reason, count] for reason, count in list(s["failure_reasons"].items())[:15]]
    text = header(ctx, report, f"{s['schemas']} maskbench schemas")
    text += f"""
Cold compile of each schema with `compile_constraints` (grammar build and validation with the
llguidance byte tokenizer; no cache). The cache hit is `Ananke.compile_constraints` on a schema it
compiled before (hash + lookup), sampled over up to 500 schemas.

{table(["metric", "value", "target", ""], rows)}
{table(["subset", "schemas", "compiled", "refused"], subsets)}
Refusals by reason (a schema can name several keywords; top 15, all in the JSON):

{table(["reason", "schemas"], reasons)}
{save_plot(ctx, "compile", draw)}"""
    update_results_md(ctx, "compile", text)
