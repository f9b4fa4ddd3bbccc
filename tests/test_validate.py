import json

import pytest

from ananke import PyConstraintIR
from ananke.constraints import validate
from tests.test_compiler import SEED_EMAIL, SEED_GRAMMAR, SEED_SCHEMA

JSON = PyConstraintIR("result_json", json_schema=SEED_SCHEMA)
GRAMMAR = PyConstraintIR("kv_grammar", grammar=SEED_GRAMMAR)
EMAIL = PyConstraintIR("email", regex_patterns=[SEED_EMAIL])


@pytest.mark.parametrize(
    "constraint, text",
    [
        (JSON, '{"result": "ok", "status": 200}'),
        (JSON, "{}"),
        (GRAMMAR, '{"a":1,"b":"c"}'),
        (GRAMMAR, "{}"),
        (EMAIL, "jane.doe@example.org"),
        (PyConstraintIR("gbnf", grammar='root ::= "a" [0-9]+'), "a123"),
        (
            PyConstraintIR("date", json_schema='{"type": "string", "format": "date"}'),
            '"2024-02-29"',
        ),
    ],
)
def test_conforming_outputs_are_satisfied(constraint, text):
    result = validate(text, [constraint])
    assert result.all_satisfied
    assert result.satisfied == [constraint.name] and result.violated == []


@pytest.mark.parametrize(
    "constraint, text, reason",
    [
        (JSON, '{"result": "ok", "status": "200"}', "/status"),
        (JSON, '{"result": "ok"', "not valid JSON"),
        (JSON, "NaN", "not valid JSON"),
        (GRAMMAR, '{"a":1,}', "leaves the grammar at byte 7"),
        (GRAMMAR, '{"a":1', "incomplete"),
        (EMAIL, "jane.doe@example", "does not fully match"),
        (EMAIL, "jane.doe@example.org\n", "does not fully match"),
        (
            PyConstraintIR("date", json_schema='{"type": "string", "format": "date"}'),
            '"2023-02-29"',
            "date",
        ),
        (
            PyConstraintIR("both", json_schema='{"type": "string"}', regex_patterns=['"a+"']),
            '"b"',
            "regex",
        ),
    ],
)
def test_violations_are_reported_with_reason(constraint, text, reason):
    result = validate(text, [constraint])
    assert not result.all_satisfied
    assert result.violated == [constraint.name] and result.satisfied == []
    assert reason in result.errors[constraint.name]


def test_each_constraint_gets_its_own_verdict():
    result = validate("jane@example.org", [EMAIL, JSON, PyConstraintIR("short", regex_patterns=[".{1,5}"])])
    assert result.satisfied == ["email"]
    assert result.violated == ["result_json", "short"]
    assert not result.all_satisfied


def test_draft_is_taken_from_the_schema():
    # In draft-04 exclusiveMaximum is a boolean modifier; in 2020-12 it is a number.
    draft4 = PyConstraintIR(
        "d4",
        json_schema='{"$schema": "http://json-schema.org/draft-04/schema#", '
        '"maximum": 5, "exclusiveMaximum": true}',
    )
    assert validate("5", [draft4]).violated == ["d4"]
    assert validate("4", [draft4]).satisfied == ["d4"]


def test_unrunnable_check_is_not_satisfied():
    bad = PyConstraintIR("bad", json_schema='{"type": 12}')  # not a valid schema
    result = validate('"x"', [bad])
    assert result.not_checked == ["bad"] and not result.all_satisfied
    assert "not checked" in result.errors["bad"]


@pytest.mark.parametrize(
    ("schema", "text", "why"),
    [  # jsonschema itself raises here (found by the coverage run: a model wrote such a number)
        ({"type": "number", "multipleOf": 0.5}, "1" + "0" * 400, "too large"),
        ({}, "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_an_output_the_checker_cannot_handle_is_not_checked(schema, text, why):
    result = validate(text, [PyConstraintIR("s", json_schema=json.dumps(schema))])
    assert result.not_checked == ["s"] and not result.all_satisfied
    assert why in result.errors["s"]


def test_catastrophic_regex_does_not_hang():
    evil = PyConstraintIR("evil", regex_patterns=["(a+)+$"])
    result = validate("a" * 40 + "!", [evil])
    assert not result.all_satisfied


def test_catastrophic_schema_pattern_does_not_hang():
    # with `re` (jsonschema's default) each of these holds the GIL, and so every thread of the
    # process, for hours; the coverage benchmark stopped dead on such a schema
    evil = r"^(\w+\s?)*$"
    text = "a" * 40 + "!"
    by_pattern = PyConstraintIR("value", json_schema=json.dumps({"type": "string", "pattern": evil}))
    by_key = PyConstraintIR(
        "key",
        json_schema=json.dumps({"type": "object", "patternProperties": {evil: {"type": "integer"}}}),
    )
    result = validate(json.dumps({text: "not an integer"}), [by_key])
    assert result.satisfied == ["key"]  # the key does not match, so nothing is asserted of its value
    result = validate(json.dumps(text), [by_pattern])
    assert result.violated == ["value"] and "does not match" in result.errors["value"]
    assert validate(json.dumps("ab cd"), [by_pattern]).all_satisfied
    matching_key = validate(json.dumps({"ab": "x"}), [by_key])
    assert matching_key.violated == ["key"]  # a key the pattern matches gets its subschema checked
