"""Decode benchmark: the same prompts unconstrained and JSON-constrained on the embedded model.

Reports tok/s both ways and their ratio, token-mask time per token (p50/p99), the share of
fast-forwarded tokens, and the aggregate throughput of 1 vs 4 concurrent requests. Runs are
interleaved (unconstrained, constrained, unconstrained, …) so machine noise hits both sides.

    python benchmarks/decode.py [--quick] [--tasks N] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from rich.progress import Progress

from ananke import PyConstraintIR, PyGenerationRequest
from ananke.backends.local import render_prompt
from ananke.constraints import compile_constraints
from ananke.engines.llamacpp import Job, JobResult, LlamaCppEngine, shared_engine
from ananke.engines.model import default_model_path
from ananke.errors import ConstraintCompileError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, environment, pct, update_results_md, write_json

MASKBENCH = ROOT.parent / "shared" / "data" / "maskbench"
PROMPT = "Produce one realistic example instance of this JSON data."
MAX_TOKENS = 128


def load_tasks(n: int) -> list[tuple[str, str]]:
    """(name, schema) of the first n maskbench schemas (spread over subsets) that compile."""
    if not MASKBENCH.is_dir():
        sys.exit(f"maskbench data not found at {MASKBENCH}")
    files = sorted(MASKBENCH.glob("*.json"))
    tasks = []
    for path in files[:: max(1, len(files) // (n * 3))]:
        schema = json.dumps(json.loads(path.read_text())["schema"])
        try:
            compile_constraints([PyConstraintIR("s", json_schema=schema)])
        except ConstraintCompileError:
            continue
        tasks.append((path.stem, schema))
        if len(tasks) == n:
            break
    return tasks


def run_jobs(
    engine: LlamaCppEngine, jobs: list[tuple[list[int], str | None]]
) -> tuple[list[JobResult], float]:
    """Submit all jobs at once; wait for all; return results and wall seconds."""
    results: list[JobResult | None] = [None] * len(jobs)
    done = threading.Semaphore(0)

    def finisher(i: int):
        def on_done(result, error):
            if error:
                raise error
            results[i] = result
            done.release()

        return on_done

    start = time.perf_counter()
    for i, (prompt, grammar) in enumerate(jobs):
        engine.submit(Job(prompt, grammar, MAX_TOKENS, 0.0, None, finisher(i)))
    for _ in jobs:
        done.acquire()
    return results, time.perf_counter() - start  # type: ignore[return-value]


def side(label: str, result: JobResult) -> dict:
    """Tokens and times of one run; decode time excludes prompt processing (first token)."""
    return {
        f"{label}_tokens": len(result.tokens),
        f"{label}_prefill_s": round(result.first_token_ms / 1000, 4),
        f"{label}_decode_s": round((result.total_time_ms - result.first_token_ms) / 1000, 4),
    }


def rate(rows: list[dict], label: str) -> float:
    """Tokens after the first, per second of decoding, over all rows."""
    tokens = sum(r[f"{label}_tokens"] - 1 for r in rows)
    return tokens / sum(r[f"{label}_decode_s"] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 tasks, for a smoke test (< 60 s)")
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args()
    n_tasks = 3 if args.quick else args.tasks

    engine = shared_engine(default_model_path())
    tasks = load_tasks(n_tasks)
    prepared = []
    for name, schema in tasks:
        request = PyGenerationRequest(PROMPT, [PyConstraintIR("s", json_schema=schema)], MAX_TOKENS, 0.0)
        grammar = compile_constraints(request.constraints_ir).grammar
        prepared.append((name, render_prompt(engine, request), grammar))
    run_jobs(engine, [(prepared[0][1], None)])  # warm-up

    rows = []
    with Progress(transient=True) as progress:
        bar = progress.add_task("decode", total=len(prepared))
        for name, prompt, grammar in prepared:
            (free,), _ = run_jobs(engine, [(prompt, None)])
            (bound,), _ = run_jobs(engine, [(prompt, grammar)])
            rows.append(
                {
                    "task": name,
                    "prompt_tokens": len(prompt),
                    **side("unconstrained", free),
                    **side("constrained", bound),
                    "forced_tokens": bound.forced_tokens,
                    "mask_times_us": [round(t, 1) for t in bound.mask_times_us],
                    "finish_reason": bound.finish_reason,
                }
            )
            progress.advance(bar)

    # Concurrency: 4 unconstrained jobs (nearly all run to max_tokens, so the batch stays full)
    # one at a time vs all at once. A first concurrent round leaves each prompt in a slot's
    # prefix cache, so both measured sides start equally warm.
    batch = [(prompt, None) for _, prompt, _ in prepared[:4]]
    while len(batch) < 4:
        batch.append(batch[0])
    run_jobs(engine, batch)
    serial_tokens, serial_s = 0, 0.0
    for job in batch:
        (result,), seconds = run_jobs(engine, [job])
        serial_tokens += len(result.tokens)
        serial_s += seconds
    results, parallel_s = run_jobs(engine, batch)
    parallel_tokens = sum(len(r.tokens) for r in results)

    free_tps, bound_tps = rate(rows, "unconstrained"), rate(rows, "constrained")
    masks = [t for r in rows for t in r["mask_times_us"]]
    summary = {
        "unconstrained_tok_s": round(free_tps, 1),
        "constrained_tok_s": round(bound_tps, 1),
        "ratio_constrained_over_unconstrained": round(bound_tps / free_tps, 3),
        "mask_p50_us": round(pct(masks, 50), 1),
        "mask_p99_us": round(pct(masks, 99), 1),
        "forced_share": round(
            sum(r["forced_tokens"] for r in rows) / max(1, sum(r["constrained_tokens"] for r in rows)), 3
        ),
        "serial_4_tok_s": round(serial_tokens / serial_s, 1),
        "concurrent_4_tok_s": round(parallel_tokens / parallel_s, 1),
        "concurrency_gain_4": round((parallel_tokens / parallel_s) / (serial_tokens / serial_s), 3),
    }
    report = {
        "suite": "decode",
        "quick": args.quick,
        **environment(),
        "settings": {
            "model": engine.model.name,
            "max_tokens": MAX_TOKENS,
            "temperature": 0.0,
            "prompt": PROMPT,
            "tasks": len(rows),
            "slots": engine.settings.slots,
        },
        "summary": summary,
        "rows": rows,
    }
    write_json("decode-quick" if args.quick else "decode", report)
    print(json.dumps(summary, indent=1))
    if not args.quick:
        write_markdown(report)


def write_markdown(report: dict) -> None:
    s = report["summary"]
    settings = report["settings"]
    table = f"""## decode — {settings["model"]}, {settings["tasks"]} maskbench JSON schemas

Run {report["when"]} on {report["machine"]["cores"]} cores; max_tokens {settings["max_tokens"]},
temperature 0.
Same prompts both ways, interleaved. tok/s counts decoding only (after the first token; prompt
processing excluded); forced tokens count as generated. The concurrency rows run 4 unconstrained
requests end to end, one by one and then at once.
Raw numbers: `benchmarks/results/decode.json`.

| metric | value | target |
|---|---|---|
| unconstrained tok/s | {s["unconstrained_tok_s"]} | |
| JSON-constrained tok/s | {s["constrained_tok_s"]} | |
| constrained ÷ unconstrained | {s["ratio_constrained_over_unconstrained"]} | >= 1.2 |
| mask time per token p50 | {s["mask_p50_us"]} µs | <= 100 µs |
| mask time per token p99 | {s["mask_p99_us"]} µs | <= 600 µs |
| fast-forwarded share of tokens | {s["forced_share"]:.1%} | |
| 4 requests one by one, tok/s | {s["serial_4_tok_s"]} | |
| 4 concurrent requests, aggregate tok/s | {s["concurrent_4_tok_s"]} | |
| concurrency gain (4 ÷ 1) | {s["concurrency_gain_4"]} | >= 1.3 |
"""
    update_results_md("decode", table)


if __name__ == "__main__":
    main()
