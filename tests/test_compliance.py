"""Token-level correctness on real data, with the real SmolLM2 tokenizer.

For every schema that compiles, the compiled matcher must never accept an instance that the
data marks invalid. Valid instances should be accepted; the known exceptions are stricter by
design (formats are asserted, `1.0` is not produced for integers) and are counted, not hidden.
The counts are printed (run with `-s`) and written to the JUnit properties.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ananke import ConstraintCompileError, PyConstraintIR
from ananke.bench.compliance import check_cases, jsts_cases, maskbench_cases, named_keywords
from ananke.constraints import compile_constraints

pytestmark = pytest.mark.model

MASKBENCH_SAMPLE = 500  # every n-th of the 5,158 files, so every subset is represented


def _checked(name: str, cases, tokenizer, record_property):
    """Run the cases; every refusal that names keywords must name keywords the schema has."""
    outcome = check_cases(cases, tokenizer)
    for label, schema_text, reason in outcome.compile_errors:
        if '"$ref": "http' not in schema_text:  # a remote $ref is refused without a keyword
            for keyword in named_keywords(reason):
                assert f'"{keyword}"' in schema_text, (label, reason)
    counts = outcome.total()
    print(f"\n{name}: {dict(sorted(counts.items()))}")
    for key, value in counts.items():
        record_property(f"{name}.{key}", value)
    return outcome, counts


def test_json_schema_test_suite_never_falsely_accepts(shared_data, model_tokenizer, record_property):
    cases = jsts_cases(shared_data / "json-schema-test-suite/tests/draft2020-12")
    outcome, counts = _checked("json-schema-test-suite", cases, model_tokenizer, record_property)
    assert outcome.false_accepts == []
    assert counts["compiled"] >= 150
    assert counts["valid_accepted"] >= 0.9 * (counts["valid_accepted"] + counts["valid_rejected"])


def test_maskbench_sample_never_falsely_accepts(shared_data, model_tokenizer, record_property):
    n_files = len(list((shared_data / "maskbench").glob("*.json")))
    cases = maskbench_cases(shared_data / "maskbench", every=n_files // MASKBENCH_SAMPLE)
    outcome, counts = _checked(f"maskbench[{len(cases)} files]", cases, model_tokenizer, record_property)
    assert outcome.false_accepts == []
    assert counts["compiled"] >= 0.8 * len(cases)
    assert counts["valid_accepted"] >= 0.9 * (counts["valid_accepted"] + counts["valid_rejected"])


def test_unsupported_keyword_schemas_name_the_keyword():
    for keyword, schema in [
        ("not", {"not": {"multipleOf": 3}}),
        ("uniqueItems", {"type": "array", "uniqueItems": True}),
        ("if", {"if": {"multipleOf": 2}, "then": {"minimum": 5}}),
        ("dependentRequired", {"type": "object", "dependentRequired": {f"k{i}": ["b"] for i in range(7)}}),
        ("propertyNames", {"type": "object", "propertyNames": {"maxLength": 3}}),
        ("contains", {"type": "array", "contains": {"type": "integer"}}),
        ("unevaluatedProperties", {"type": "object", "allOf": [{}], "unevaluatedProperties": False}),
    ]:
        with pytest.raises(ConstraintCompileError, match=keyword):
            compile_constraints([PyConstraintIR("s", json_schema=json.dumps(schema))])


def test_shared_data_path_is_relative_to_the_checkout(shared_data):
    assert shared_data == Path(__file__).resolve().parents[2] / "shared" / "data"
