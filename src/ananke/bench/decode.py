"""decode: the same prompts unconstrained and JSON-constrained on the embedded model.

Reports tok/s both ways and their ratio, token-mask time per token (p50/p99) and the share of
fast-forwarded tokens. Runs alternate (unconstrained, constrained, unconstrained, …) so machine
noise hits both sides.

Then each constrained output's token ids are replayed through XGrammar (when installed; same GGUF
vocabulary, strict mode like Ananke's closed objects, compact JSON) in a child process with a
memory and time limit (ananke.bench.isolate), timing `fill_next_token_bitmask` at every state
along the output: XGrammar's mask p50/p99 beside Ananke's. A token XGrammar refuses ends that
replay and is counted.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ananke.bench import xgrammar_peer
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
from ananke.bench.tasks import PROMPT, maskbench_tasks

MAX_TOKENS = 128


def run_job(
    engine, prompt: list[int], grammar: str | None, max_tokens: int = MAX_TOKENS, timeout: float | None = None
):
    """One job on the engine, waited for (TimeoutError after `timeout` s); returns its JobResult."""
    from ananke.engines.llamacpp import Job
    from ananke.engines.steering import SamplingParams

    box: dict = {}
    done = threading.Event()

    def on_done(result, error):
        box["result"], box["error"] = result, error
        done.set()

    engine.submit(Job(prompt, grammar, max_tokens, SamplingParams(temperature=0.0), None, on_done))
    if not done.wait(timeout):
        raise TimeoutError(f"the engine did not finish the job within {timeout} s")
    if box["error"] is not None:
        raise box["error"]
    return box["result"]


FORWARD_BATCHES = (1, 2, 3, 4, 8)


def forward_pass_ms(engine, repeats: int) -> dict[int, float]:
    """Median ms of one llama_decode of k tokens after a 200-token context, per k: what a forced
    token costs beside a sampled one on this machine. Runs on the engine's context from the
    calling thread, so only in an engine that no other thread has decoded with: llama.cpp's passes
    from two threads slow each other down ~3x for good (see forward_pass_ms_in_child). Uses
    sequence 0 and clears it before and after."""
    llama, batch, memory = engine.llama, engine._batch, engine._memory
    context = engine.tokenize_bytes(b'{"name": "Ada", "tags": ["x", "y"], "count": 3} ' * 20)[:200]

    def decode(tokens: list[int], start: int) -> float:
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, i == len(tokens) - 1
        batch.n_tokens = len(tokens)
        started = time.perf_counter()
        if llama.llama_decode(engine._ctx, batch) != 0:
            raise RuntimeError("llama_decode failed while timing forward passes")
        return time.perf_counter() - started

    llama.llama_memory_seq_rm(memory, 0, -1, -1)
    try:
        decode(context, 0)
        times: dict[int, list[float]] = {k: [] for k in FORWARD_BATCHES}
        for _ in range(repeats):
            for k in FORWARD_BATCHES:
                times[k].append(decode(context[:k], len(context)))
                llama.llama_memory_seq_rm(memory, 0, len(context), -1)
    finally:
        llama.llama_memory_seq_rm(memory, 0, -1, -1)
        engine._slot_tokens[0] = []  # the slot's cached prompt is gone
    return {k: round(pct(v, 50) * 1000, 3) for k, v in times.items()}


def forward_pass_ms_in_child(repeats: int) -> dict[int, float]:
    """forward_pass_ms in a child process with its own engine (same model and settings), before
    this process decodes: passes from a thread other than the engine's scheduler, measured here,
    made every later decode of that engine ~3x slower (and after the scheduler had decoded, the
    passes themselves). In a fresh process the times are close to the engine's own steps (a
    profile of this bench: 6.3 ms for 1 token, 18.7 ms for 4)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_forward_pass_child, repeats).result(timeout=600)


def _forward_pass_child(repeats: int) -> dict[int, float]:
    from ananke.engines.llamacpp import shared_runner
    from ananke.engines.model import default_model_path

    return forward_pass_ms(shared_runner(default_model_path()), repeats)


def side(label: str, result) -> dict:
    """Tokens and times of one run; decode time excludes prompt processing (first token)."""
    return {
        f"{label}_tokens": len(result.tokens),
        f"{label}_prefill_s": round(result.first_token_ms / 1000, 4),
        f"{label}_decode_s": round((result.total_time_ms - result.first_token_ms) / 1000, 4),
    }


def rate(rows: list[dict], label: str) -> float:
    """Tokens after the first, per second of decoding, over all rows."""
    tokens = sum(r[f"{label}_tokens"] - 1 for r in rows)
    seconds = sum(r[f"{label}_decode_s"] for r in rows)
    return tokens / seconds if seconds else 0.0


def run(ctx: BenchContext) -> dict:
    from ananke.constraints import compile_constraints
    from ananke.engines.llamacpp import render_prompt, shared_runner
    from ananke.engines.model import default_model_path

    n_tasks = 3 if ctx.quick else 20
    forward_ms = forward_pass_ms_in_child(5 if ctx.quick else 40)
    engine = shared_runner(default_model_path())
    prepared, too_long = [], []
    for task in maskbench_tasks(ctx.need("maskbench"), n_tasks, compiling_only=True):
        request = task.request(MAX_TOKENS)
        grammar = compile_constraints(request.constraints_ir).grammar
        shortest = engine.shortest_output(grammar)
        if shortest is not None and shortest[0] > MAX_TOKENS:  # the engine refuses it: no output fits
            too_long.append(f"{task.name} ({shortest[0]} tokens)")
            continue
        prepared.append((task.name, task.schema, render_prompt(engine, request), grammar))
    run_job(engine, prepared[0][2], None)  # warm-up

    rows = []
    with progress("decode", len(prepared)) as advance:
        for name, _, prompt, grammar in prepared:
            free = run_job(engine, prompt, None)
            bound = run_job(engine, prompt, grammar)
            rows.append(
                {
                    "task": name,
                    "prompt_tokens": len(prompt),
                    **side("unconstrained", free),
                    **side("constrained", bound),
                    "forced_tokens": bound.forced_tokens,
                    "mask_times_us": [round(t, 1) for t in bound.mask_times_us],
                    "constrained_token_ids": list(bound.tokens),
                    "finish_reason": bound.finish_reason,
                }
            )
            advance()

    replays = [(task[1], row["constrained_token_ids"]) for task, row in zip(prepared, rows, strict=True)]
    xgr_rows, xgr_facts = xgrammar_peer.run_isolated("replay_worker", replays, "decode (xgrammar replay)")
    for row, xgr in zip(rows, xgr_rows, strict=False):
        row["xgrammar"] = xgr

    free_tps, bound_tps = rate(rows, "unconstrained"), rate(rows, "constrained")
    masks = [t for r in rows for t in r["mask_times_us"]]
    summary = {
        "unconstrained_tok_s": round(free_tps, 1),
        "constrained_tok_s": round(bound_tps, 1),
        "ratio_constrained_over_unconstrained": ratio(bound_tps, free_tps),
        "mask_p50_us": round(pct(masks, 50), 1),
        "mask_p99_us": round(pct(masks, 99), 1),
        "forced_share": round(
            sum(r["forced_tokens"] for r in rows) / max(1, sum(r["constrained_tokens"] for r in rows)), 3
        ),
        "xgrammar": xgrammar_summary(xgr_rows, xgr_facts),
        "forward_pass_ms_by_batch": forward_ms,
        # what one more token in a forward pass costs, as a share of a one-token pass
        "extra_token_cost_share": round((forward_ms[4] - forward_ms[1]) / 3 / forward_ms[1], 3),
    }
    settings = {
        "model": engine.model.name,
        "max_tokens": MAX_TOKENS,
        "temperature": 0.0,
        "prompt": PROMPT,
        "tasks": len(rows),
        "skipped_shortest_output_over_max_tokens": too_long,
        "slots": engine.settings.slots,
        "threads": engine.settings.threads,
    }
    report = write_report(ctx, "decode", settings, summary, {"rows": rows})
    xgr_masks = [t for r in xgr_rows for t in r.get("mask_times_us", [])]
    write_markdown(ctx, report, {"Ananke": masks, "XGrammar (replay)": xgr_masks})
    return summary


def xgrammar_summary(rows: list[dict], facts: dict) -> dict:
    """XGrammar's replays (replay_worker) summed up, or why they did not run."""
    if "skipped" in facts:
        return facts
    masks = [t for r in rows for t in r.get("mask_times_us", [])]
    return {
        "version": facts["version"],
        "mask_p50_us": round(pct(masks, 50), 1),
        "mask_p99_us": round(pct(masks, 99), 1),
        "masks": len(masks),
        "rejected_tokens": sum("rejected_at" in r for r in rows),
        "compile_errors": sum("compile_error" in r for r in rows),
        "crashes": facts["crashes"],
    }


def xgrammar_line(s: dict) -> str:
    """XGrammar's replay beside Ananke's masks in a sentence, or the line saying why it did not run."""
    xgr = s.get("xgrammar", {"skipped": "XGrammar was not run"})
    if "skipped" in xgr:
        return f"{xgr['skipped']}."
    return (
        f"XGrammar {xgr['version']}, replaying each constrained output above ({xgr['masks']} masks): "
        f"mask p50 **{xgr['mask_p50_us']} µs**, p99 **{xgr['mask_p99_us']} µs** (Ananke: p50 "
        f"{s['mask_p50_us']} µs, p99 {s['mask_p99_us']} µs). XGrammar masks every state from the "
        "start to the end of the output; Ananke only where it samples (fast-forwarded tokens need "
        "none; its first mask is computed, and timed, when the job is submitted). Tokens of "
        "Ananke's output "
        f"XGrammar refused (ending that replay): {xgr['rejected_tokens']}; schemas it did not "
        f"compile: {xgr['compile_errors']}; crashes: {xgr['crashes']}."
    )


def forward_line(s: dict) -> str:
    """What the forced tokens can save here: the cost of a forward pass by batch size."""
    by_batch = s.get("forward_pass_ms_by_batch")
    if not by_batch:
        return ""
    passes = ", ".join(f"{k} → {v} ms" for k, v in by_batch.items())
    share = s["extra_token_cost_share"]
    return (
        f"One forward pass of k tokens (k → median ms, 200 tokens of context): {passes}. Each token "
        f"beyond the first costs **{share:.0%}** of a one-token pass here, so a fast-forwarded token "
        f"saves only {1 - share:.0%} of a sampled one's forward pass: with "
        f"{s['forced_share']:.1%} of tokens forced, the ratio cannot pass "
        f"{1 / (1 - s['forced_share'] * (1 - share)):.2f} even with no other work per token."
    )


def write_markdown(ctx: BenchContext, report: dict, masks: dict[str, list[float]]) -> None:
    s, settings = report["summary"], report["settings"]

    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        values = [max(m, 1) for series in masks.values() for m in series]
        bins = np.geomspace(1, max(values, default=2), 41)
        for (label, series), color in zip(masks.items(), ["#4477aa", "#aa3377"], strict=False):
            if series:
                ax.hist([max(m, 1) for m in series], bins=bins, color=color, alpha=0.6, label=label)
        ax.set_xscale("log")
        for value, label, style in [(s["mask_p50_us"], "p50", "-"), (s["mask_p99_us"], "p99", "--")]:
            ax.axvline(value, color="black", linestyle=style, label=f"Ananke {label} {value} µs")
        for value, label in [(100, "p50 target"), (600, "p99 target")]:
            ax.axvline(value, color="#cc3311", linestyle=":", label=f"{label} {value} µs")
        ax.set_xlabel("mask time per token (µs, log scale)")
        ax.set_ylabel("tokens")
        ax.legend(fontsize=8)
        return fig

    ratio_value = s["ratio_constrained_over_unconstrained"]
    rows = [
        ["unconstrained tok/s", s["unconstrained_tok_s"], "", ""],
        ["JSON-constrained tok/s", s["constrained_tok_s"], "", ""],
        ["constrained ÷ unconstrained", ratio_value, ">= 1.1", target_note(ratio_value, 1.1)],
        ["mask time per token p50", f"{s['mask_p50_us']} µs", "<= 100 µs",
         target_note(s["mask_p50_us"], 100, higher_is_better=False)],
        ["mask time per token p99", f"{s['mask_p99_us']} µs", "<= 600 µs",
         target_note(s["mask_p99_us"], 600, higher_is_better=False)],
        ["fast-forwarded share of tokens", f"{s['forced_share']:.1%}", "", ""],
    ]  # fmt: skip
    text = header(ctx, report, f"{settings['model']}, {settings['tasks']} maskbench JSON schemas")
    text += f"""
max_tokens {settings["max_tokens"]}, temperature 0, {settings["threads"]} threads. Same prompts both
ways, alternated. tok/s counts decoding only (after the first token; prompt processing excluded);
fast-forwarded (forced) tokens count as generated; constrained decoding includes the
budget's completion searches. Left out, because no complete output of theirs fits in max_tokens
(the engine refuses them): {", ".join(settings.get("skipped_shortest_output_over_max_tokens", [])) or "none"}.

{table(["metric", "value", "target", ""], rows)}
{forward_line(s)}

{xgrammar_line(s)}

{save_plot(ctx, "decode", draw)}"""
    update_results_md(ctx, "decode", text)
