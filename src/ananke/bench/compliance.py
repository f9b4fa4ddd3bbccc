"""compliance: token-level correctness of compiled schemas on real data, with the real tokenizer.

For every schema that compiles, the compiled matcher (llguidance, SmolLM2's tokenizer) is run over
each instance the data labels valid or invalid. An invalid instance accepted is a false accept
(must be 0) — unless the compile announced a `format` it does not enforce (an annotation, with a
warning) and the validator rejects the instance: that is counted apart, as
`invalid_admitted_format_caught`. Used by tests/test_compliance.py too, on a sample.

XGrammar (when installed) gets the same schemas and the same token ids in a child process with a
memory and time limit (ananke.bench.isolate; a crash is counted), compiled as the schema is written
(`strict_mode=False`, compact JSON): per data set, schemas compiled and instances accepted or
rejected, the stop token included (the output must be able to end there).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ananke.bench import xgrammar_peer
from ananke.bench.common import BenchContext, header, progress, table, update_results_md, write_report
from ananke.bench.tasks import maskbench_files

JSTS_DIR = "json-schema-test-suite/tests/draft2020-12"


@dataclass
class Case:
    group: str  # maskbench subset, or test-suite keyword file
    label: str
    schema: Any
    tests: list[tuple[Any, bool]]  # (instance, valid)


@dataclass
class Outcome:
    counts: dict[str, Counter] = field(default_factory=dict)  # per group
    false_accepts: list[str] = field(default_factory=list)
    compile_errors: list[tuple[str, str, str]] = field(default_factory=list)  # (label, schema, reason)

    def total(self) -> Counter:
        return sum(self.counts.values(), Counter())


def named_keywords(reason: str) -> list[str]:
    """The keywords a compile error names as unsupported."""
    match = re.search(r"keyword\(s\): ([\w$]+(?:, [\w$]+)*)", reason)
    return match.group(1).split(", ") if match else []


def maskbench_cases(maskbench: Path, every: int = 1) -> list[Case]:
    cases = []
    for path in maskbench_files(maskbench)[::every]:
        data = json.loads(path.read_text())
        tests = [(t["data"], t["valid"]) for t in data["tests"]]
        cases.append(Case(path.stem.split("---")[0], path.stem, data["schema"], tests))
    return cases


def jsts_cases(directory: Path) -> list[Case]:
    cases = []
    for path in sorted(directory.glob("*.json")):
        for case in json.loads(path.read_text()):
            tests = [(t["data"], t["valid"]) for t in case["tests"]]
            cases.append(Case(path.stem, f"{path.stem}: {case['description']}", case["schema"], tests))
    return cases


def compact(instance: Any) -> str:
    """The instance as the matchers are fed it (in the model's tokens): compact JSON."""
    return json.dumps(instance, separators=(",", ":"), ensure_ascii=False)


def check_cases(cases: list[Case], tokenizer, advance=None) -> Outcome:
    """Compile each case's schema and run its instances through a fresh matcher."""
    import llguidance as llg

    from ananke import ConstraintCompileError, PyConstraintIR
    from ananke.constraints import compile_constraints, validate

    outcome = Outcome()
    for case in cases:
        counts = outcome.counts.setdefault(case.group, Counter())
        counts["schemas"] += 1
        schema_text = json.dumps(case.schema)
        constraint = PyConstraintIR("s", json_schema=schema_text)
        try:
            compiled = compile_constraints([constraint], closed_objects=False)  # as the schema says
        except ConstraintCompileError as exc:
            counts["compile_errors"] += 1
            outcome.compile_errors.append((case.label, schema_text, exc.reason))
        else:
            counts["compiled"] += 1
            initial = llg.LLMatcher(tokenizer, compiled.grammar, log_level=0)
            if initial.is_error():
                raise RuntimeError(f"{case.label}: compiled grammar rejected: {initial.get_error()}")
            for instance, valid in case.tests:
                text = compact(instance)
                matcher = initial.deep_copy()
                accepted = matcher.consume_tokens(tokenizer.tokenize_str(text)) and matcher.is_accepting()
                caught = (
                    accepted
                    and not valid
                    and compiled.warnings
                    and not validate(text, [constraint]).all_satisfied
                )
                if caught:  # accepted only for a `format` announced as unenforced; the validator has it
                    counts["invalid_admitted_format_caught"] += 1
                    continue
                counts[f"{'valid' if valid else 'invalid'}_{'accepted' if accepted else 'rejected'}"] += 1
                if accepted and not valid:
                    outcome.false_accepts.append(f"{case.label}: {text[:80]}")
        if advance:
            advance()
    return outcome


def xgrammar_counts(cases: list[Case], results: list[dict]) -> dict:
    """XGrammar's answers (compliance_worker) counted the way Ananke's are."""
    counts = Counter(schemas=len(cases))
    for case, result in zip(cases, results, strict=True):
        if "accepted" not in result:
            error = result.get("error", "")
            counts["compile_errors" if "compile_error" in result else
                   "crashes" if error.startswith("crash") else "errors"] += 1  # fmt: skip
            continue
        counts["compiled"] += 1
        for (_, valid), accepted in zip(case.tests, result["accepted"], strict=True):
            counts[f"{'valid' if valid else 'invalid'}_{'accepted' if accepted else 'rejected'}"] += 1
    return dict(counts)


# XGrammar gets every 10th maskbench schema of a full run: its compile of a large schema takes
# seconds here (a run on all of them was still in the 1,064 Kubernetes schemas after 68 minutes);
# Ananke is counted again on the same schemas for the side-by-side table.
XGRAMMAR_EVERY = 10


def run_xgrammar(
    suites: dict[str, list[Case]], tokenizer, full: dict[str, tuple[list[Case], Outcome]]
) -> dict:
    """XGrammar on every case of the given data sets: counts per data set, its version and crashes;
    Ananke's counts on the same cases under "ananke" (from `full`, the whole run's cases and
    outcome per data set, where XGrammar got all of them; else counted again)."""
    cases = [case for suite in suites.values() for case in suite]
    items = [(json.dumps(c.schema), [tokenizer.tokenize_str(compact(i)) for i, _ in c.tests]) for c in cases]
    results, facts = xgrammar_peer.run_isolated("compliance_worker", items, "compliance (xgrammar)")
    if "skipped" in facts:
        return facts
    by_suite, start = dict(facts), 0
    for name, suite in suites.items():
        by_suite[name] = xgrammar_counts(suite, results[start : start + len(suite)])
        start += len(suite)
    by_suite["ananke"] = {
        name: dict((full[name][1] if suite is full[name][0] else check_cases(suite, tokenizer)).total())
        for name, suite in suites.items()
    }
    by_suite["maskbench_every_nth_schema"] = XGRAMMAR_EVERY
    return by_suite


def _rows(groups: dict[str, dict]) -> list[list]:
    rows = []
    total = sum((Counter(c) for c in groups.values()), Counter())
    for group, c in [*sorted(groups.items()), ("**all**", total)]:
        c = Counter(c)
        valid = c["valid_accepted"] + c["valid_rejected"]
        rows.append([
            group, c["schemas"], c["compiled"], f"{c['valid_accepted']}/{valid}",
            c["invalid_accepted"], c["invalid_accepted"] + c["invalid_rejected"],
        ])  # fmt: skip
    return rows


def _keywords(outcome: Outcome) -> Counter:
    return Counter(k for _, _, reason in outcome.compile_errors for k in named_keywords(reason))


def run(ctx: BenchContext) -> dict:
    from ananke.engines.model import default_model_path, load_tokenizer

    tokenizer = load_tokenizer(default_model_path())
    every = 100 if ctx.quick else 1
    suites = {
        "maskbench": maskbench_cases(ctx.need("maskbench"), every),
        "json-schema-test-suite": jsts_cases(ctx.need(JSTS_DIR))[:: 10 if ctx.quick else 1],
    }
    outcomes = {}
    with progress("compliance", sum(len(c) for c in suites.values())) as advance:
        for name, cases in suites.items():
            outcomes[name] = check_cases(cases, tokenizer, advance)
    sampled = {**suites, "maskbench": suites["maskbench"][:: 1 if ctx.quick else XGRAMMAR_EVERY]}
    xgrammar = run_xgrammar(sampled, tokenizer, {name: (suites[name], outcomes[name]) for name in suites})

    summary = {}
    for name, outcome in outcomes.items():
        total = outcome.total()
        summary[name] = {
            "schemas": total["schemas"],
            "compiled": total["compiled"],
            "valid_accepted": total["valid_accepted"],
            "valid_rejected": total["valid_rejected"],
            "invalid_accepted": total["invalid_accepted"],
            "invalid_rejected": total["invalid_rejected"],
            "invalid_admitted_format_caught": total["invalid_admitted_format_caught"],
            "unsupported_keywords": dict(_keywords(outcome).most_common()),
        }
    summary["xgrammar"] = xgrammar
    raw = {
        "groups": {name: {g: dict(c) for g, c in o.counts.items()} for name, o in outcomes.items()},
        "false_accepts": {name: o.false_accepts for name, o in outcomes.items()},
        "compile_errors": {name: [[label, reason] for label, _, reason in o.compile_errors]
                           for name, o in outcomes.items()},
    }  # fmt: skip
    settings = {"maskbench_every_nth_file": every, "tokenizer": "SmolLM2-135M-Instruct (GGUF vocabulary)"}
    report = write_report(ctx, "compliance", settings, summary, raw)

    write_markdown(ctx, report)
    return {name: {k: v for k, v in s.items() if k != "unsupported_keywords"} for name, s in summary.items()}


def xgrammar_section(summary: dict) -> str:
    """Ananke and XGrammar side by side per data set, or the line saying why XGrammar did not run."""
    xgr = summary.get("xgrammar", {"skipped": "XGrammar was not run"})
    if "skipped" in xgr:
        return f"_{xgr['skipped']}._\n"
    rows = []
    for name in ("maskbench", "json-schema-test-suite"):
        ananke = xgr["ananke"][name] if "ananke" in xgr else summary[name]  # older reports: all cases
        for matcher, c in [("Ananke", ananke), (f"XGrammar {xgr['version']}", xgr[name])]:
            c = Counter(c)
            valid = c["valid_accepted"] + c["valid_rejected"]
            invalid = c["invalid_accepted"] + c["invalid_rejected"] + c["invalid_admitted_format_caught"]
            rows.append([
                name, matcher, c["schemas"], c["compiled"], f"{c['valid_accepted']}/{valid}",
                f"{c['invalid_accepted']}/{invalid}", c["crashes"],
            ])  # fmt: skip
    columns = ["data set", "matcher", "schemas", "compiled", "valid accepted", "invalid accepted", "crashes"]
    return f"""Same schemas, same SmolLM2 token ids, XGrammar compiled as the schema is written
(`strict_mode=False`, compact separators), a fresh `GrammarMatcher` per instance: accepted = every
token accepted and then the stop token. Each side counts instances of the schemas it compiled
(Ananke's invalid instances include those its validator catches for an unenforced `format`).
XGrammar keeps object properties in the schema's order (`any_order=False`, its default), so a
valid instance with its keys in another order is rejected. XGrammar ran in a child process with a
memory and time limit; crashes: {xgr["crashes"]}. {_xgrammar_sample(xgr)}

{table(columns, rows)}"""


def _xgrammar_sample(xgr: dict) -> str:
    every = xgr.get("maskbench_every_nth_schema", 1)
    if every == 1:
        return ""
    return (
        f"\nBoth rows count the same schemas: every {every}th maskbench schema of this run and every\n"
        "test-suite case (a full run with XGrammar on all 6,146 maskbench schemas was still in the\n"
        "Kubernetes ones after 68 minutes: its compile of a large schema takes seconds here)."
    )


def write_markdown(ctx: BenchContext, report: dict) -> None:
    """The RESULTS.md section, from the report alone (so it can be regenerated from the JSON)."""
    columns = ["group", "schemas", "compiled", "valid accepted", "invalid accepted (must be 0)", "invalid"]
    per_file = []
    for group, c in sorted(report["groups"]["json-schema-test-suite"].items()):
        c = Counter(c)
        passed = c["valid_accepted"] + c["invalid_rejected"]
        failed = c["valid_rejected"] + c["invalid_accepted"]
        verdict = "pass" if failed == 0 and c["compile_errors"] == 0 else "fail"
        per_file.append(
            [group, verdict, c["schemas"], c["compile_errors"], passed, failed, c["invalid_accepted"]]
        )
    jsts_keywords = report["summary"]["json-schema-test-suite"]["unsupported_keywords"]
    keywords = ", ".join(f"`{k}` ({n})" for k, n in jsts_keywords.items()) or "none"
    m = report["summary"]["maskbench"]
    false_accepts = [f for fs in report["false_accepts"].values() for f in fs]
    listed = "".join(f"\n- `{f}`" for f in false_accepts[:20]) or " none."
    text = header(ctx, report, "maskbench and JSON-Schema-Test-Suite 2020-12, token level")
    text += f"""
Each schema is compiled; each instance (compact JSON) is fed as SmolLM2 tokens to a fresh
llguidance matcher; accepted = every token allowed and the matcher accepts at the end. Schemas that
do not compile are refused with the unsupported keyword named, never silently loosened.

### maskbench (visible data), per subset

{table(columns, _rows(report["groups"]["maskbench"]))}
Invalid instances accepted: **{m["invalid_accepted"]}** (target 0); accepted by the grammar only
because a `format` llguidance lacks was announced as unenforced, and rejected by the validator:
{m.get("invalid_admitted_format_caught", 0)}. Valid instances rejected:
{m["valid_rejected"]} (stricter by design: known formats are asserted, `1.0` is not produced for integers).

False accepts (all data sets):{listed}

### XGrammar beside Ananke

{xgrammar_section(report["summary"])}
### JSON-Schema-Test-Suite draft 2020-12, per keyword file

A file passes when every schema in it compiles and every instance gets the right answer. A refused
schema counts as a failure of its file, not as a false accept.

{table(["file", "result", "schemas", "refused", "right answers", "wrong answers", "false accepts"], per_file)}
Unsupported keywords named by refusals (schemas): {keywords}.
"""
    update_results_md(ctx, "compliance", text)
