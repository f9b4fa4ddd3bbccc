"""Token-level correctness on real data, with the real SmolLM2 tokenizer.

For every schema that compiles, the compiled matcher must never accept an instance that the
data marks invalid. Valid instances should be accepted; the known exceptions are stricter by
design (formats are asserted, `1.0` is not produced for integers) and are counted, not hidden.
The counts are printed (run with `-s`) and written to the JUnit properties.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import llguidance as llg
import pytest

from ananke import ConstraintCompileError, PyConstraintIR
from ananke.constraints import compile_constraints, validate

pytestmark = pytest.mark.model

MASKBENCH_SAMPLE = 500  # every n-th of the 5,158 files, so every subset is represented


def _accepts(initial: llg.LLMatcher, tokenizer, text: str) -> bool:
    matcher = initial.deep_copy()
    return matcher.consume_tokens(tokenizer.tokenize_str(text)) and matcher.is_accepting()


def _run(cases, tokenizer) -> tuple[Counter, list[str]]:
    """cases: (label, schema, [(instance, valid)]). Returns counts and false-accept labels."""
    counts: Counter = Counter()
    false_accepts = []
    for label, schema, tests in cases:
        schema_text = json.dumps(schema)
        constraint = PyConstraintIR("s", json_schema=schema_text)
        try:
            compiled = compile_constraints([constraint])
        except ConstraintCompileError as exc:
            counts["compile_errors"] += 1
            keywords = re.search(r"keyword\(s\): ([\w$]+(?:, [\w$]+)*)", exc.reason)
            if keywords and '"$ref": "http' not in schema_text:  # named keywords are in the schema
                for keyword in keywords.group(1).split(", "):
                    assert f'"{keyword}"' in schema_text, (label, exc.reason)
            continue
        counts["compiled"] += 1
        initial = llg.LLMatcher(tokenizer, compiled.grammar, log_level=0)
        assert not initial.is_error(), (label, initial.get_error())
        for instance, valid in tests:
            text = json.dumps(instance, separators=(",", ":"), ensure_ascii=False)
            accepted = _accepts(initial, tokenizer, text)
            caught = compiled.warnings and not validate(text, [constraint]).all_satisfied
            if accepted and not valid and caught:  # an announced unenforced format; the validator has it
                counts["invalid_admitted_by_announced_format"] += 1
                continue
            counts[f"{'valid' if valid else 'invalid'}_{'accepted' if accepted else 'rejected'}"] += 1
            if accepted and not valid:
                false_accepts.append(f"{label}: {text[:80]}")
    return counts, false_accepts


def _report(name: str, counts: Counter, record_property) -> None:
    print(f"\n{name}: {dict(sorted(counts.items()))}")
    for key, value in counts.items():
        record_property(f"{name}.{key}", value)


def test_json_schema_test_suite_never_falsely_accepts(shared_data, model_tokenizer, record_property):
    cases = []
    for path in sorted((shared_data / "json-schema-test-suite/tests/draft2020-12").glob("*.json")):
        for case in json.loads(path.read_text()):
            label = f"{path.stem}: {case['description']}"
            cases.append((label, case["schema"], [(t["data"], t["valid"]) for t in case["tests"]]))
    counts, false_accepts = _run(cases, model_tokenizer)
    _report("json-schema-test-suite", counts, record_property)
    assert false_accepts == []
    assert counts["compiled"] >= 150
    assert counts["valid_accepted"] >= 0.9 * (counts["valid_accepted"] + counts["valid_rejected"])


def test_maskbench_sample_never_falsely_accepts(shared_data, model_tokenizer, record_property):
    files = sorted((shared_data / "maskbench").glob("*.json"))[
        :: len(list((shared_data / "maskbench").glob("*.json"))) // MASKBENCH_SAMPLE
    ]
    cases = []
    for path in files:
        data = json.loads(path.read_text())
        cases.append((path.stem, data["schema"], [(t["data"], t["valid"]) for t in data["tests"]]))
    counts, false_accepts = _run(cases, model_tokenizer)
    _report(f"maskbench[{len(files)} files]", counts, record_property)
    assert false_accepts == []
    assert counts["compiled"] >= 0.8 * len(files)
    assert counts["valid_accepted"] >= 0.9 * (counts["valid_accepted"] + counts["valid_rejected"])


def test_unsupported_keyword_schemas_name_the_keyword():
    for keyword, schema in [
        ("not", {"not": {"type": "null"}}),
        ("uniqueItems", {"type": "array", "uniqueItems": True}),
        ("if", {"if": {"type": "string"}, "then": {"minLength": 2}}),
        ("dependentRequired", {"type": "object", "dependentRequired": {"a": ["b"]}}),
        ("propertyNames", {"type": "object", "propertyNames": {"maxLength": 3}}),
        ("contains", {"type": "array", "contains": {"type": "integer"}}),
        ("unevaluatedProperties", {"type": "object", "unevaluatedProperties": False}),
    ]:
        with pytest.raises(ConstraintCompileError, match=keyword):
            compile_constraints([PyConstraintIR("s", json_schema=json.dumps(schema))])


def test_shared_data_path_is_relative_to_the_checkout(shared_data):
    assert shared_data == Path(__file__).resolve().parents[2] / "shared" / "data"
