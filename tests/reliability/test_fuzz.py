"""Property tests of the compiler: any JSON schema, regex or grammar either compiles or raises
ConstraintCompileError (never another exception, never past the time budget), and a compiled
constraint never accepts an output that an independent checker rejects."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time

import jsonschema
import llguidance as llg
import pytest
import regex as regex_module
from hypothesis import HealthCheck, assume, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from lark import Lark
from lark.exceptions import LarkError

from ananke import ConstraintCompileError, PyConstraintIR
from ananke.constraints import CompileLimits, compile_constraints
from ananke.constraints.compiler import byte_tokenizer

LIMITS = CompileLimits(time_budget_s=5.0)
FUZZ = settings(
    max_examples=int(os.environ.get("ANANKE_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def note(label: str) -> None:
    """Count an outcome in Hypothesis' statistics (--hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(label)


def accepts(grammar: str, text: str) -> bool:
    matcher = llg.LLMatcher(byte_tokenizer(), grammar, log_level=0)
    data = text.encode()
    return matcher.try_consume_tokens(list(data)) == len(data) and matcher.is_accepting()


def compile_or_refuse(constraint: PyConstraintIR):
    """The compiled grammar, or None when refused with a ConstraintCompileError; in bounded time."""
    started = time.monotonic()
    try:
        grammar = compile_constraints([constraint], LIMITS).grammar
        note("compiled")
        return grammar
    except ConstraintCompileError:
        note("refused")
        return None
    finally:
        assert time.monotonic() - started < LIMITS.time_budget_s + 1


# ---------------------------------------------------------------------- JSON schemas

NOT_REQUIRED = [{"required": ["a"]}, {"required": ["a", "b"]}]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=5))
leaf_schemas = st.one_of(
    st.sampled_from(
        [
            {},
            {"type": "string"},
            {"type": "number"},
            {"type": "integer"},
            {"type": "boolean"},
            {"type": "null"},
            {"type": ["string", "null"]},
        ]
    ),
    st.builds(
        lambda a, b: {"type": "string", "minLength": a, "maxLength": a + b},
        st.integers(0, 4),
        st.integers(0, 4),
    ),
    st.builds(
        lambda p: {"type": "string", "pattern": p},
        st.sampled_from(["^[a-z]+$", "^a*b$", "[0-9]{2}", "^(x|y)+$"]),
    ),
    st.builds(
        lambda f: {"type": "string", "format": f}, st.sampled_from(["date", "email", "uuid", "color", "ipv4"])
    ),
    st.builds(
        lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
        st.integers(-50, 50),
        st.integers(0, 20),
    ),
    st.builds(lambda lo: {"type": "number", "exclusiveMinimum": lo}, st.integers(-5, 5)),
    st.builds(lambda m: {"type": "integer", "multipleOf": m}, st.integers(1, 7)),
    st.builds(lambda values: {"enum": values}, st.lists(scalars, min_size=1, max_size=4)),
    st.builds(lambda value: {"const": value}, scalars),
    st.builds(  # the `not`s with a positive spelling (schemas.plain_not)
        lambda inner: {"not": inner},
        st.sampled_from([{}, {"type": "null"}, {"type": ["string", "integer"]}, *NOT_REQUIRED]),
    ),
    st.builds(
        lambda values: {"not": {"enum": values}}, st.lists(st.text(max_size=3), min_size=1, max_size=3)
    ),
    st.builds(  # an `if` whose negation has a positive spelling (schemas.plain_if)
        lambda condition, then, otherwise: {"if": condition, "then": then, "else": otherwise},
        st.sampled_from([{"type": "string"}, {"properties": {"a": {"const": "x"}}}, True, False]),
        st.sampled_from([{"minLength": 1}, {"required": ["b"]}, False]),
        st.sampled_from([{"type": "integer"}, {"required": ["a"]}, True]),
    ),
    st.builds(  # `not` of bounds, of a mixed enum, of several properties (schemas.plain_not)
        lambda bound, value, values, names: st.sampled_from(
            [
                {"not": {"minimum": value}},
                {"not": {"type": "string", "maxLength": bound}},
                {"not": {"minItems": bound, "maxItems": bound + 1}},
                {"not": {"enum": values}},
                {
                    "not": {
                        "type": "object",
                        "properties": {"a": {"type": "string"}, "b": {"const": value}},
                        "required": names,
                    }
                },
            ]
        ),
        st.integers(0, 3),
        st.integers(-3, 3),
        st.lists(scalars, min_size=1, max_size=4),
        st.lists(st.sampled_from(["a", "b", "c"]), max_size=2),
    ).flatmap(lambda strategy: strategy),
    st.builds(  # a oneOf with branches the object's own `required` may imply (schemas.plain_one_of)
        lambda required, groups: {
            "type": "object",
            "properties": {"a": {}, "b": {}, "c": {}},
            "required": required,
            "oneOf": [{"required": group} for group in groups],
        },
        st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True),
        st.lists(
            st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2, unique=True),
            min_size=2,
            max_size=3,
        ),
    ),
    st.sampled_from(
        [
            {"not": {"multipleOf": 3}},
            {"type": "array", "uniqueItems": True},
            {"if": {"multipleOf": 2}, "then": {"minimum": 5}},
        ]
    ),  # unsupported: must be refused
)


def composite(children):
    keys = st.sampled_from(["a", "b", "c"])
    return st.one_of(
        st.builds(
            lambda props, required, extra: {
                "type": "object",
                "properties": props,
                "required": list(props)[:required],
                "additionalProperties": extra,
            },
            st.dictionaries(keys, children, max_size=3),
            st.integers(0, 3),
            st.one_of(st.booleans(), children),
        ),
        st.builds(
            lambda items, lo, span: {"type": "array", "items": items, "minItems": lo, "maxItems": lo + span},
            children,
            st.integers(0, 2),
            st.integers(0, 3),
        ),
        st.builds(
            lambda props, needs: {"type": "object", "properties": props, "dependentRequired": needs},
            st.dictionaries(keys, children, max_size=3),
            st.dictionaries(keys, st.lists(keys, max_size=2), max_size=2),
        ),
        st.builds(lambda xs: {"anyOf": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"allOf": xs}, st.lists(children, min_size=1, max_size=2)),
        st.builds(lambda xs: {"oneOf": xs}, st.lists(children, min_size=1, max_size=2)),
    )


schemas = st.recursive(leaf_schemas, composite, max_leaves=8)
json_values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), children, max_size=3)
    ),
    max_leaves=6,
)


def _valid(schema: dict, instance) -> bool:
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return validator.is_valid(instance)


@FUZZ
@given(schema=schemas, data=st.data())
def test_json_schemas_compile_or_refuse_and_never_falsely_accept(schema, data):
    grammar = compile_or_refuse(PyConstraintIR("s", json_schema=json.dumps(schema)))
    if grammar is None:
        return
    instances = [data.draw(json_values, label="random value")]
    with contextlib.suppress(Exception):  # hypothesis-jsonschema cannot serve every schema
        instances.append(data.draw(from_schema(schema), label="valid instance"))
    for instance in instances:
        text = json.dumps(instance, separators=(",", ":"), ensure_ascii=False)
        if accepts(grammar, text):
            note("an instance accepted")
            assert _valid(schema, instance), f"false accept: {text} under {schema}"


# ---------------------------------------------------------------------- regexes

fragments = st.sampled_from(
    [
        "a",
        "b",
        "x",
        "[a-c]",
        "[^a]",
        r"\d",
        ".",
        "(a|b)",
        "x?",
        "y*",
        "z+",
        "(ab)",
        "a{2}",
        "b{1,3}",
        "(",
        ")",
        "[",
        "\\",
        "|",
        "^",
        "$",
        "(?=a)",
        r"\1",
        "*",
        "{2}",
        r"\w",
        "[0-9]+",
    ]
)
regexes = st.lists(fragments, min_size=1, max_size=6).map("".join)


@FUZZ
@given(pattern=regexes, texts=st.lists(st.text(alphabet="abcxyz019_\n", max_size=8), max_size=8))
def test_regexes_compile_or_refuse_and_never_falsely_accept(pattern, texts):
    grammar = compile_or_refuse(PyConstraintIR("r", regex_patterns=[pattern]))
    if grammar is None:
        return
    for text in texts:
        if accepts(grammar, text):
            note("a text accepted")
            assert regex_module.fullmatch(pattern, text), f"false accept: {text!r} for /{pattern}/"


# ---------------------------------------------------------------------- grammars

items = st.sampled_from(['"a"', '"b"', '"ab"', '"c"', "r1", "r2", "r3", "missing"])
sequences = st.lists(
    st.tuples(items, st.sampled_from(["", "?", "*", "+"])).map(lambda t: t[0] + t[1] if t[1] else t[0]),
    min_size=1,
    max_size=3,
).map(" ".join)
bodies = st.lists(sequences, min_size=1, max_size=3).map(" | ".join)


@FUZZ
@given(
    rules=st.lists(bodies, min_size=1, max_size=4),
    texts=st.lists(st.text(alphabet="abc", max_size=6), max_size=8),
)
def test_grammars_compile_or_refuse_and_never_falsely_accept(rules, texts):
    source = "\n".join(f"{'start' if i == 0 else f'r{i}'}: {body}" for i, body in enumerate(rules))
    grammar = compile_or_refuse(PyConstraintIR("g", grammar=source))
    if grammar is None:
        return
    try:  # an independent parser (Lark, Earley) over the same grammar text
        parser = Lark(source, start="start", parser="earley", lexer="dynamic_complete")
    except LarkError:
        assume(False)  # a construct the two dialects read differently: not comparable
    for text in texts:
        if accepts(grammar, text):
            note("a text accepted")
            try:
                parser.parse(text)
            except LarkError as exc:
                pytest.fail(f"false accept: {text!r} for grammar\n{source}\n{exc}")


def test_fuzz_alphabet_really_exercises_errors():
    """Sanity: the strategies reach both outcomes, so the properties are not vacuous."""
    assert compile_or_refuse(PyConstraintIR("r", regex_patterns=["a("])) is None
    assert compile_or_refuse(PyConstraintIR("r", regex_patterns=["(a|b)x?"])) is not None
    assert re.fullmatch("(a|b)x?", "ax")
