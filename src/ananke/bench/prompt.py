"""prompt: prompt processing alone for the peers suite's tasks, the part of end-to-end time no tool changes.

`ananke bench peers` gives every tool the same prompt tokens (chat template, schema in the prompt).
This measures, for the same 50 tasks, the prompt length and the time the embedded engine takes to
process each prompt cold (no cached prefix, one token sampled, no constraint) — the floor under
every tool's end-to-end time in that suite, so the share of it that sampling speed can move.
`--quick`: the peers suite's quick tasks.
"""

from __future__ import annotations

import statistics

from ananke.bench.common import BenchContext, header, log, table, update_results_md, write_report
from ananke.bench.decode import run_job
from ananke.bench.peers import FULL_SIZE, QUICK_SIZE
from ananke.bench.tasks import maskbench_tasks
from ananke.engines.llamacpp import render_prompt, shared_runner
from ananke.engines.model import default_model_path


def process_cold(engine, tokens: list[int]) -> float:
    """Seconds from admission to the first sampled token, with no cached prefix."""
    engine.forget_prompts()
    return run_job(engine, tokens, None, max_tokens=1, timeout=600).first_token_ms / 1000


def run(ctx: BenchContext) -> dict:
    engine = shared_runner(default_model_path())
    n_tasks, max_tokens, _ = QUICK_SIZE if ctx.quick else FULL_SIZE  # the peers suite's tasks and prompts
    tasks = maskbench_tasks(ctx.need("maskbench"), n_tasks)
    process_cold(engine, render_prompt(engine, tasks[0].request(max_tokens)))  # warm-up
    rows = []
    for task in tasks:
        tokens = render_prompt(engine, task.request(max_tokens))
        rows.append(
            {
                "task": task.name,
                "prompt_tokens": len(tokens),
                "seconds": round(process_cold(engine, tokens), 4),
            }
        )
    lengths = [r["prompt_tokens"] for r in rows]
    summary = {
        "tasks": len(rows),
        "prompt_tokens_total": sum(lengths),
        "prompt_tokens_median": statistics.median(lengths),
        "prompt_tokens_max": max(lengths),
        "seconds_total": round(sum(r["seconds"] for r in rows), 2),
    }
    settings = {"tasks": n_tasks, "max_tokens": max_tokens}
    report = write_report(ctx, "prompt", settings, summary, {"rows": rows})
    columns = ["tasks", "prompt tokens", "median", "max", "cold prompt processing s"]
    keys = ("tasks", "prompt_tokens_total", "prompt_tokens_median", "prompt_tokens_max", "seconds_total")
    text = header(ctx, report, "cold prompt processing of the peers suite's prompts")
    text += "\n" + table(columns, [[summary[k] for k in keys]])
    update_results_md(ctx, "prompt", text)
    log(
        f"{len(rows)} prompts, {sum(lengths)} tokens (median {summary['prompt_tokens_median']}, max "
        f"{max(lengths)}): {summary['seconds_total']} s cold prompt processing"
    )
    return summary
