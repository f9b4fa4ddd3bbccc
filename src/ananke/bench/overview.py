"""The "Targets at a glance" section at the top of RESULTS.md, from whatever results exist."""

from __future__ import annotations

import json

from ananke.bench.common import BenchContext, table, target_note

# (suite, label, how to read the value from the summary, target text, target, higher is better)
TARGETS = [
    ("decode", "constrained ÷ unconstrained tok/s (JSON)",
     lambda s: s["ratio_constrained_over_unconstrained"], ">= 1.1", 1.1, True),
    ("decode", "mask time per token p50 (µs)", lambda s: s["mask_p50_us"], "<= 100", 100, False),
    ("decode", "mask time per token p99 (µs)", lambda s: s["mask_p99_us"], "<= 600", 600, False),
    ("compile", "compile p50 (ms)", lambda s: s["compile_p50_ms"], "<= 2", 2, False),
    ("compile", "compile p99 (ms)", lambda s: s["compile_p99_ms"], "<= 100", 100, False),
    ("peers", "Github_easy: end-to-end time, llama-cpp-python grammar ÷ Ananke",
     lambda s: s["Github_easy"]["llama_cpp_grammar"]["ananke_speedup_e2e"], ">= 2", 2, True),
    ("peers", "Github_easy: end-to-end time, Outlines ÷ Ananke",
     lambda s: s["Github_easy"]["outlines"]["ananke_speedup_e2e"], ">= 1.5", 1.5, True),
    ("compile", "Ananke ÷ raw llguidance compile time, p50",
     lambda s: s["ratio_p50"], "<= 1.5", 1.5, False),
    ("compile", "Ananke ÷ raw llguidance compile time, p99",
     lambda s: s["ratio_p99"], "<= 2", 2, False),
    ("compile", "cache hit p50 (ms)", lambda s: s["cache_hit_p50_ms"], "<= 0.02", 0.02, False),
    ("compliance", "maskbench invalid instances accepted",
     lambda s: s["maskbench"]["invalid_accepted"], "0", 0, False),
    ("compliance", "JSON-Schema-Test-Suite invalid instances accepted",
     lambda s: s["json-schema-test-suite"]["invalid_accepted"], "0", 0, False),
    ("finish", "e-mail regex, temperature 0.7, max_tokens 40: satisfied share",
     lambda s: s["email"]["satisfied"] / s["email"]["outputs"], ">= 0.95", 0.95, True),
    ("finish", "Github_medium, max_tokens 128: satisfied share",
     lambda s: s["medium_128"]["satisfied"] / s["medium_128"]["outputs"], ">= 0.8", 0.8, True),
    ("finish", "Github_medium, max_tokens 256: satisfied share",
     lambda s: s["medium_256"]["satisfied"] / s["medium_256"]["outputs"], ">= 0.9", 0.9, True),
    ("finish", "outputs cut although a completion fitted",
     lambda s: s["cut_though_a_completion_fitted"], "0", 0, False),
    ("coverage", "relaxed-only schemas, outputs passing the full schema (200, 3 attempts): share",
     lambda s: s["generated_satisfied_share"], ">= 0.9", 0.9, True),
    ("coverage", "strict grammar: invalid instances accepted, or outputs falsely satisfied",
     lambda s: s["strict_false_accepts"] + s["false_satisfied"], "0", 0, False),
    ("concurrency", "8 ÷ 1 in flight, aggregate tok/s, in process",
     lambda s: s["in_process"]["gain_8_over_1"], ">= 1.3", 1.3, True),
    ("concurrency", "8 ÷ 1 in flight, aggregate tok/s, service",
     lambda s: s["service"]["gain_8_over_1"], ">= 1.3", 1.3, True),
    ("service", "HTTP service overhead over in-process, p50 (ms)",
     lambda s: s["overhead_p50_ms"], "<= 1.5", 1.5, False),
    ("service", "service overhead above a bare loopback POST, p50 (ms)",
     lambda s: s["overhead_above_bare_post_p50_ms"], "<= 0.3", 0.3, False),
    ("service", "same, above the echo held as long as the generation, p50 (ms)",
     lambda s: s["overhead_above_held_post_p50_ms"], "<= 0.3", 0.3, False),
    ("isolation", "4 requests' tok/s beside a pathological compile ÷ alone",
     lambda s: s["ratio_beside_over_alone"], ">= 0.8", 0.8, True),
    ("corpus", "every schema, strict + relaxed: 5xx, crashes, unanswered",
     lambda s: s["server_errors_5xx"] + s["crashes"] + s["no_answer"], "0", 0, False),
]  # fmt: skip

# Per peer per measure, no target: the comparison at a glance (peers suite, each workload).
PEER_MEASURES = [
    ("schemas compiled", lambda t: f"{t['tasks'] - t['compile_failures'] - t['errors']}/{t['tasks']}"),
    ("crashes", lambda t: t["crashes"]),
    ("schema-valid share", lambda t: t["valid_share_of_tasks"]),
    ("tok/s end to end", lambda t: t["common_tok_s"]),
    ("compile p50 / p99 ms", lambda t: f"{t['compile_p50_ms']} / {t['compile_p99_ms']}"),
    ("mask ms per token", lambda t: t.get("mask_per_token_ms", "n/a")),
]


def peer_rows(ctx: BenchContext) -> list[list]:
    path = ctx.results_dir / f"{ctx.stem('peers')}.json"
    if not path.exists():
        return []
    summary = json.loads(path.read_text())["summary"]
    rows = []
    for workload, by_tool in summary.items():
        if not isinstance(by_tool, dict) or "ananke" not in by_tool:
            continue  # an older layout (one workload)
        for label, read in PEER_MEASURES:
            rows.append(
                [workload, label] + [read(by_tool[t]) if t in by_tool else "skipped" for t in PEER_TOOLS]
            )
    return rows


PEER_TOOLS = ["ananke", "llama_cpp_grammar", "outlines", "xgrammar"]
BEGIN, END = "<!-- targets:begin -->", "<!-- targets:end -->"


def update(ctx: BenchContext) -> None:
    rows = []
    for suite, label, read, target_text, target, higher in TARGETS:
        path = ctx.results_dir / f"{ctx.stem(suite)}.json"
        if not path.exists():
            rows.append([label, "not run", target_text, "", suite])
            continue
        report = json.loads(path.read_text())
        try:
            value = read(report["summary"])
        except (KeyError, TypeError):  # e.g. a peer that was skipped
            value = None
        status = "met" if value == target == 0 else target_note(value, target, higher) if target else ""
        if target == 0 and value:
            status = f"missed: {value}"
        rows.append([label, value, target_text, status, f"{suite} ({report['when']})"])
    per_peer = peer_rows(ctx)
    peers = ""
    if per_peer:
        names = ["Ananke", "llama-cpp-python grammar", "Outlines", "XGrammar"]
        peers = "\nEvery peer on the same tasks (peers suite; compile times for all maskbench schemas, raw\n"
        peers += "llguidance and XGrammar included, are in the compile section):\n\n"
        peers += table(["workload", "measure", *names], per_peer)
    section = f"""{BEGIN}
## Targets at a glance

Measured value against the issue's targets; details and the reasons for misses in each suite's
section below. Each suite's run time and machine are in its section.

{table(["target", "measured", "target", "status", "suite (run at)"], rows)}{peers}{END}"""
    path = ctx.out / ("RESULTS-quick.md" if ctx.quick else "RESULTS.md")
    text = (
        path.read_text() if path.exists() else "# Benchmark results\n\nRegenerate with `ananke bench all`.\n"
    )
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:  # after the title and its first paragraph
        first = text.find("\n## ")
        text = (text.rstrip() + "\n\n" + section + "\n") if first < 0 else (
            text[:first] + "\n" + section + "\n" + text[first:]
        )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
