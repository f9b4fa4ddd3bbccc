"""JSON Schema coverage, strict vs relaxed, on every schema of the shared data (issue 10).

Part 1 (every schema of ../shared/data/maskbench and of the JSON-Schema-Test-Suite 2020-12, no
model): usable strict / relaxed; for strict grammars, invalid instances accepted (false accepts,
must be 0); for relaxed grammars, valid instances rejected (the weakening must keep them) and
invalid instances the validator calls satisfied (false "satisfied", must be 0).

Part 2 (the embedded model): a sample of the schemas only relaxed mode can use, generated with
`schema_mode="relaxed"` (up to 3 attempts): share whose output passes the full schema, attempts
used, and outputs reported satisfied that an independent jsonschema check rejects (must be 0).

`ananke bench coverage`: part 2 on 200 schemas, max_tokens 384 (`--quick`: every 100th maskbench
schema, every 10th test-suite case, 2 generations of 64 tokens).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from dataclasses import replace

import jsonschema
import llguidance as llg

from ananke import Ananke, ConstraintCompileError, GenerationTimeout, PyConstraintIR, PyGenerationRequest
from ananke.bench.common import BenchContext, progress, update_results_md, write_report
from ananke.bench.compliance import JSTS_DIR, Case, jsts_cases, maskbench_cases
from ananke.constraints import compile_constraints, validate
from ananke.constraints.compiler import byte_tokenizer
from ananke.constraints.schemas import subschemas
from ananke.constraints.validate import with_timed_patterns

PROMPT = "Produce one realistic example instance of this JSON data."
# (maskbench every nth, test suite every nth, generation sample, max_tokens)
QUICK, FULL = (100, 10, 2, 64), (1, 1, 200, 384)


def load_cases(ctx: BenchContext, maskbench_every: int = 1, jsts_every: int = 1) -> list[Case]:
    """Every schema with its instances; the test suite's cases form one subset."""
    jsts = jsts_cases(ctx.need(JSTS_DIR))[::jsts_every]
    return maskbench_cases(ctx.need("maskbench"), maskbench_every) + [
        replace(case, group="JSON-Schema-Test-Suite") for case in jsts
    ]


def in_schema_order(instance, schema):
    """The instance with object keys in the order the schema lists them (first listing wins).

    llguidance fixes property order to the schema's; JSON objects are unordered, so the data's own
    key order would count valid instances as rejected for order alone. Approximate: one order for
    a name across the whole schema, and allOf intersections may order keys differently.
    """
    rank: dict[str, int] = {}
    for _, node in subschemas(schema):
        if isinstance(node.get("properties"), dict):
            for name in node["properties"]:
                rank.setdefault(name, len(rank))

    def reorder(value):
        if isinstance(value, dict):
            return {k: reorder(value[k]) for k in sorted(value, key=lambda k: rank.get(k, len(rank)))}
        return [reorder(v) for v in value] if isinstance(value, list) else value

    return reorder(instance)


def _accepts(grammar: str, text: str) -> bool:
    matcher = llg.LLMatcher(byte_tokenizer(), grammar, log_level=0)
    return matcher.consume_tokens(list(text.encode())) and matcher.is_accepting()


def _reason(exc: ConstraintCompileError) -> str:
    return exc.reason.split(": ", 1)[-1].split(" (schema_mode=")[0][:90]


def static_part(cases: list[Case], advance) -> tuple[dict, list[Case]]:
    counts: dict[str, Counter] = defaultdict(Counter)
    refused_strict: Counter = Counter()
    refused_relaxed: Counter = Counter()
    relaxed_keywords: Counter = Counter()
    problems: list[str] = []
    relaxed_only: list[Case] = []
    for case in cases:
        c = counts[case.group]
        c["schemas"] += 1
        constraint = PyConstraintIR("s", json_schema=json.dumps(case.schema))
        try:
            strict = compile_constraints([constraint], closed_objects=False)  # the grammar as written
            c["usable_strict"] += 1
        except ConstraintCompileError as exc:
            strict = None
            refused_strict[_reason(exc)] += 1
        try:
            relaxed = compile_constraints([constraint], schema_mode="relaxed", closed_objects=False)
            c["usable_relaxed"] += 1
        except ConstraintCompileError as exc:
            relaxed = None
            refused_relaxed[_reason(exc)] += 1
        for instance, valid in case.tests:
            texts = {
                json.dumps(form, separators=(",", ":"), ensure_ascii=False)
                for form in (instance, in_schema_order(instance, case.schema))
            }
            text = min(texts)
            if strict is not None:
                accepted = any(_accepts(strict.grammar, t) for t in texts)
                if valid:
                    c["strict_valid_accepted" if accepted else "strict_valid_rejected"] += 1
                elif not accepted:
                    c["strict_invalid_rejected"] += 1
                elif strict.warnings and not validate(text, [constraint]).all_satisfied:
                    c["strict_admitted_unenforced_format"] += 1  # announced, and the validator catches it
                else:
                    c["strict_false_accepts"] += 1
                    problems.append(f"strict false accept: {case['label']}: {text[:80]}")
            if relaxed is not None and relaxed.relaxed:
                accepted = any(_accepts(relaxed.grammar, t) for t in texts)
                verdict = validate(text, [constraint]).all_satisfied
                if valid:
                    c["relaxed_valid_accepted" if accepted else "relaxed_valid_rejected"] += 1
                else:
                    c["relaxed_invalid_admitted" if accepted else "relaxed_invalid_rejected"] += 1
                    if verdict:
                        c["false_satisfied"] += 1
                        problems.append(f"false satisfied: {case['label']}: {text[:80]}")
        if relaxed is not None and relaxed.relaxed:
            c["relaxed_schemas"] += 1
            for entry in relaxed.relaxed:
                relaxed_keywords[entry.split(": ")[1].rsplit("/", 1)[-1]] += 1
            if strict is None:
                relaxed_only.append(case)
        advance()
    report = {
        "per_subset": {k: dict(v) for k, v in sorted(counts.items())},
        "total": dict(sum(counts.values(), Counter())),
        "refused_strict": dict(refused_strict.most_common()),
        "refused_relaxed": dict(refused_relaxed.most_common()),
        "relaxed_keywords": dict(relaxed_keywords.most_common()),
        "problems": problems,
    }
    return report, relaxed_only


async def generation_part(relaxed_only: list[Case], sample: int, max_tokens: int, advance) -> dict:
    # evenly spread over every subset, not the first `sample` in load order
    count = min(sample, len(relaxed_only))
    chosen = [relaxed_only[i * len(relaxed_only) // count] for i in range(count)]
    client = Ananke("local", timeout_secs=900, schema_mode="relaxed")
    gate = asyncio.Semaphore(4)  # the engine's batch size
    rows = []

    async def one(case: Case) -> None:
        schema_text = json.dumps(case.schema)
        # a fixed seed: the warmer retries sample, and two runs should differ only by what changed
        request = PyGenerationRequest(
            PROMPT, [PyConstraintIR("s", json_schema=schema_text)], max_tokens, 0.0, seed=0
        )
        async with gate:
            start = time.perf_counter()
            try:
                response = await client.generate(request)
            except GenerationTimeout:
                rows.append({"label": case.label, "subset": case.group, "attempts": None,
                             "satisfied": False, "independent_ok": None, "finish_reason": "timeout",
                             "relaxed": [], "seconds": round(time.perf_counter() - start, 2),
                             "error": "timeout"})  # fmt: skip
                advance()
                return
        independent = _independent_check(case.schema, response.text)
        rows.append({
            "label": case.label, "subset": case.group, "attempts": response.metadata.attempts,
            "satisfied": response.validation.all_satisfied, "independent_ok": independent,
            "finish_reason": response.metadata.finish_reason, "relaxed": response.metadata.relaxed,
            "seconds": round(time.perf_counter() - start, 2),
            "error": response.validation.errors.get("s", ""),
        })  # fmt: skip
        advance()

    await asyncio.gather(*(one(case) for case in chosen))
    await client.aclose()
    satisfied = [r for r in rows if r["satisfied"]]
    return {
        "sample": len(rows),
        "max_tokens": max_tokens,
        "satisfied": len(satisfied),
        "satisfied_share": round(len(satisfied) / len(rows), 4) if rows else 0.0,
        "by_attempts": dict(Counter(r["attempts"] for r in satisfied)),
        "mean_seconds": round(sum(r["seconds"] for r in rows) / len(rows), 2) if rows else 0.0,
        "unsatisfied_finish_reasons": dict(Counter(r["finish_reason"] for r in rows if not r["satisfied"])),
        "false_satisfied": sum(1 for r in rows if r["satisfied"] and r["independent_ok"] is False),
        "rows": sorted(rows, key=lambda r: r["label"]),
    }


def _independent_check(schema, text: str) -> bool | None:
    """jsonschema's own verdict (the schema's draft, formats checked); None if it cannot run."""
    try:
        instance = json.loads(text)
    except ValueError:
        return False
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        # patterns through the regex module, as in ananke's validator: with `re`, a catastrophic
        # pattern over the model's output stops the whole bench (it holds the GIL for hours)
        timed = with_timed_patterns(cls)
        return timed(schema, format_checker=cls.FORMAT_CHECKER).is_valid(instance)
    except Exception:
        return None


def failure_causes(rows: list[dict]) -> Counter:
    """Why outputs did not pass: the model's length, the relaxed keywords, or uncheckable offline."""
    causes: Counter = Counter()
    for r in rows:
        if r["satisfied"]:
            continue
        if r["finish_reason"] in ("length", "timeout"):
            causes["cut at max_tokens or timed out (the small model loops, mostly inside strings)"] += 1
        elif r["error"].startswith("not checked"):
            causes["not checkable offline (the schema's remote $ref cannot be fetched)"] += 1
        else:
            causes["complete JSON that violates the full schema after every attempt"] += 1
    return causes


def markdown(report: dict) -> str:
    total, gen = report["static"]["total"], report.get("generation")
    lines = [
        "## coverage — JSON Schema usable strict vs relaxed (issue 10)",
        "",
        f"Run {report['when']} on {report['machine']['cores']} cores. Every schema of "
        "`../shared/data/maskbench` and of the JSON-Schema-Test-Suite 2020-12; grammars checked "
        "with a byte-level llguidance matcher, outputs with the validator. "
        "Raw numbers and every refusal reason: `benchmarks/results/coverage.json`.",
        "",
        "An instance counts as accepted in its own key order or with its keys in schema order "
        "(llguidance fixes property order; JSON objects are unordered). *Strict false accepts*: "
        "invalid instances the strict grammar accepts and the validator passes. *Format-only*: "
        "accepted by the grammar only because a "
        "`format` llguidance lacks is an annotation (announced as a warning), and rejected by the "
        "validator. *False satisfied*: invalid instances the validator passes for a relaxed schema.",
        "",
        "| subset | schemas | usable strict | usable relaxed | strict false accepts | format-only "
        "(caught) | strict: valid accepted | relaxed: valid accepted | relaxed: invalid admitted by "
        'grammar | false "satisfied" |',
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [*report["static"]["per_subset"].items(), ("**all**", total)]
    for name, c in rows:
        n = c.get("schemas", 0)
        kept, lost = c.get("relaxed_valid_accepted", 0), c.get("relaxed_valid_rejected", 0)
        ok = c.get("strict_valid_accepted", 0)
        lines.append(
            f"| {name} | {n} | {c.get('usable_strict', 0)} ({c.get('usable_strict', 0) / n:.1%}) | "
            f"{c.get('usable_relaxed', 0)} ({c.get('usable_relaxed', 0) / n:.1%}) | "
            f"{c.get('strict_false_accepts', 0)} | {c.get('strict_admitted_unenforced_format', 0)} | "
            f"{ok}/{ok + c.get('strict_valid_rejected', 0)} | "
            f"{kept}/{kept + lost} | "
            f"{c.get('relaxed_invalid_admitted', 0)} | {c.get('false_satisfied', 0)} |"
        )
    lines += ["", "Keywords relaxed (occurrences): " + ", ".join(
        f"`{k}` {v}" for k, v in report["static"]["relaxed_keywords"].items())]  # fmt: skip
    lines += ["", "Still refused in relaxed mode: " + "; ".join(
        f"{reason} ({n})" for reason, n in report["static"]["refused_relaxed"].items())]  # fmt: skip
    if gen:
        lines += [
            "",
            f"Generation with the embedded model (SmolLM2-135M), {gen['sample']} schemas only relaxed mode "
            f"can use, temperature 0 then warmer retries, max_tokens {gen['max_tokens']}, up to 3 attempts:",
            "",
            "| outputs passing the full schema | at attempt 1 / 2 / 3 | not passing: finish reasons | "
            'false "satisfied" |',
            "|---|---|---|---|",
            f"| {gen['satisfied']}/{gen['sample']} ({gen['satisfied_share']:.1%}) | "
            + " / ".join(str(gen["by_attempts"].get(str(k), gen["by_attempts"].get(k, 0))) for k in (1, 2, 3))
            + f" | {gen['unsatisfied_finish_reasons']} | {gen['false_satisfied']} |",
            "",
            "Outputs not passing, by cause: "
            + "; ".join(f"{cause}: {n}" for cause, n in failure_causes(gen["rows"]).most_common())
            + ". Each is reported `violated` (or not checked), never satisfied.",
        ]
    return "\n".join(lines)


def run(ctx: BenchContext) -> dict:
    maskbench_every, jsts_every, sample, max_tokens = QUICK if ctx.quick else FULL
    cases = load_cases(ctx, maskbench_every, jsts_every)
    with progress("coverage: compile + check every schema", len(cases)) as advance:
        static, relaxed_only = static_part(cases, advance)
    raw = {"static": static}
    count = min(sample, len(relaxed_only))
    with progress(f"coverage: generate ({count} relaxed-only schemas)", count) as advance:
        raw["generation"] = asyncio.run(generation_part(relaxed_only, sample, max_tokens, advance))
    total, generation = static["total"], raw["generation"]
    summary = {
        "schemas": total.get("schemas", 0),
        "usable_strict": total.get("usable_strict", 0),
        "usable_relaxed": total.get("usable_relaxed", 0),
        "strict_false_accepts": total.get("strict_false_accepts", 0),
        "false_satisfied": total.get("false_satisfied", 0) + generation["false_satisfied"],
        "generated_satisfied_share": generation["satisfied_share"],
    }
    settings = {"maskbench_every_nth": maskbench_every, "test_suite_every_nth": jsts_every,
                "sample": sample, "max_tokens": max_tokens}  # fmt: skip
    report = write_report(ctx, "coverage", settings, summary, raw)
    update_results_md(ctx, "coverage", markdown(report))
    return summary
