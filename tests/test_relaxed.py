"""JSON Schema drafts and relaxed mode (issue 10): what cannot be enforced is weakened, named and
validated afterwards; an output that fails the full schema is never reported satisfied."""

from __future__ import annotations

import json

import jsonschema
import llguidance as llg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ananke import Ananke, ConstraintCompileError, InvalidRequestError, PyConstraintIR, PyGenerationRequest
from ananke.constraints import compile_constraints, validate
from ananke.constraints.compiler import byte_tokenizer, constraints_hash


def _compile(schema: dict, mode: str = "strict", closed_objects: bool = False):
    """Objects open, as the schema says: these tests are about the grammar's exactness."""
    constraints = [PyConstraintIR("s", json_schema=json.dumps(schema))]
    return compile_constraints(constraints, schema_mode=mode, closed_objects=closed_objects)


def _accepts(grammar: str, instance) -> bool:
    matcher = llg.LLMatcher(byte_tokenizer(), grammar, log_level=0)
    text = json.dumps(instance, separators=(",", ":"))
    return matcher.consume_tokens(list(text.encode())) and matcher.is_accepting()


def _assert_exact(schema: dict, valid: list, invalid: list, closed_objects: bool = False):
    """The cases agree with jsonschema (in the schema's draft), strict mode compiles the schema
    with nothing left out, and its grammar takes exactly the valid cases; returns the compile."""
    checker = jsonschema.validators.validator_for(schema)(schema)
    assert all(checker.is_valid(v) for v in valid) and not any(checker.is_valid(v) for v in invalid)
    compiled = _compile(schema, closed_objects=closed_objects)
    assert compiled.relaxed == ()
    for instance in valid:
        assert _accepts(compiled.grammar, instance), instance
    for instance in invalid:
        assert not _accepts(compiled.grammar, instance), instance
    return compiled


STR, NUM = {"type": "string"}, {"type": "number"}
D4, D7 = "http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-07/schema#"
OBJ = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
# a `not` with no positive spelling (not "b is a multiple of 3"): see test_nots_…
NOT_B_THREES = {"properties": {"b": {"multipleOf": 3}}, "required": ["b"]}
MANY_DEPENDENCIES = {"a": ["b"], **{f"k{i}": ["b"] for i in range(6)}}
# (keyword llguidance refuses, schema using it, pointer the relaxed result names, an instance the
# relaxed grammar admits although the full schema rejects it)
UNSUPPORTED = [
    ("not", {**OBJ, "not": NOT_B_THREES}, "/not", {"a": 1, "b": "x"}),
    ("oneOf", {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}]}, "/oneOf", 3),
    (
        "uniqueItems",
        {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
        "/uniqueItems",
        [1, 1],
    ),
    # more dependencies than an object's alternatives may grow to (`dependencies` is draft-07's)
    ("dependencies", {"$schema": D7, **OBJ, "dependencies": MANY_DEPENDENCIES}, "/dependencies", {"a": 1}),
    ("dependentRequired", {**OBJ, "dependentRequired": MANY_DEPENDENCIES}, "/dependentRequired", {"a": 1}),
    (
        "dependentSchemas",
        {**OBJ, "dependentSchemas": {k: {"required": v} for k, v in MANY_DEPENDENCIES.items()}},
        "/dependentSchemas",
        {"a": 1},
    ),
    ("if", {"type": "integer", "if": {"multipleOf": 2}, "then": {"minimum": 5}, "else": {}}, "/if", 2),
    ("contains", {"type": "array", "contains": {"type": "string"}}, "/contains", [1]),
    ("propertyNames", {"type": "object", "propertyNames": {"maxLength": 3}}, "/propertyNames", {"abcd": 1}),
    ("minProperties", {**OBJ, "minProperties": 1}, "/minProperties", {}),
    ("maxProperties", {**OBJ, "maxProperties": 1}, "/maxProperties", {"a": 1, "b": "x"}),
    # beside an allOf (alone it is the additionalProperties it means: test_plain_unevaluated_…)
    (
        "unevaluatedProperties",
        {**OBJ, "allOf": [{"properties": {"c": {}}}], "unevaluatedProperties": False},
        "/unevaluatedProperties",
        {"d": 1},
    ),
]


@pytest.mark.parametrize(
    ("keyword", "schema", "where", "invalid"), UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED]
)
def test_strict_refuses_naming_the_keyword_and_relaxed_names_what_it_weakened(
    keyword, schema, where, invalid
):
    with pytest.raises(ConstraintCompileError, match=keyword) as refused:
        _compile(schema)
    assert "schema_mode='relaxed'" in str(refused.value)
    compiled = _compile(schema, "relaxed")
    assert compiled.schema_mode == "relaxed"
    assert any(entry.startswith(f"s: {where}") for entry in compiled.relaxed), compiled.relaxed
    assert compiled.to_dict()["relaxed"] == list(compiled.relaxed)
    # the weakened grammar lets this instance through; the validator, on the full schema, does not
    text = json.dumps(invalid, separators=(",", ":"))
    assert _accepts(compiled.grammar, invalid)
    verdict = validate(text, [PyConstraintIR("s", json_schema=json.dumps(schema))])
    assert verdict.violated == ["s"] and not verdict.all_satisfied


@pytest.mark.parametrize(
    ("keyword", "invalid", "valid"),
    [("minProperties", {}, {"a": 1}), ("maxProperties", {"a": 1, "b": "x"}, {"b": "x"})],
)
def test_closed_objects_make_property_counts_exact(keyword, invalid, valid):
    """With undeclared keys ruled out, llguidance enforces min/maxProperties in strict mode."""
    compiled = _compile({**OBJ, keyword: 1}, closed_objects=True)
    assert compiled.closed == ("s: /",) and compiled.relaxed == ()
    assert not _accepts(compiled.grammar, invalid)
    assert _accepts(compiled.grammar, valid)


def test_relaxed_grammar_admits_every_valid_instance_of_the_original():
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"enum": ["x", "y"]}, "uniqueItems": True},
            "kind": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}]},
        },
        "required": ["tags", "kind"],
        "additionalProperties": False,
        "not": {"properties": {"kind": {"const": 7}}},
    }
    grammar = _compile(schema, "relaxed").grammar
    for valid in [{"tags": [], "kind": 1}, {"tags": ["x", "y"], "kind": 2.5}, {"tags": ["y"], "kind": -3}]:
        assert _accepts(grammar, valid), valid
    # what is still enforced stays enforced: the enum, the required keys, no extra keys
    for invalid in [{"tags": ["z"], "kind": 1}, {"tags": []}, {"tags": [], "kind": 1, "extra": 0}]:
        assert not _accepts(grammar, invalid), invalid


def test_only_what_llguidance_refuses_is_relaxed():
    # a oneOf llguidance can prove exclusive is enforced exactly, even next to one it cannot
    schema = {
        "type": "object",
        "properties": {
            "exact": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "loose": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}]},
        },
    }
    assert _compile(schema, "relaxed").relaxed == ("s: /properties/loose/oneOf: enforced as anyOf",)
    # a schema that needs nothing relaxed compiles to the strict grammar, with nothing listed
    plain = _compile(OBJ, "relaxed")
    assert plain.relaxed == () and plain.grammar == _compile(OBJ).grammar
    # min/maxProperties stay where every listed property is required
    counted = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "minProperties": 1,
    }
    assert _compile(counted, "relaxed").relaxed == ()


def test_a_property_named_like_a_keyword_is_a_property():
    schema = {
        "type": "object",
        "properties": {"not": {"type": "integer"}, "if": {"type": "string"}},
        "required": ["not", "if"],
        "additionalProperties": False,
        "uniqueItems": True,  # meaningless on objects, but refused by llguidance: relaxed
    }
    compiled = _compile(schema, "relaxed")
    assert compiled.relaxed == ("s: /uniqueItems: not enforced",)
    assert _accepts(compiled.grammar, {"not": 1, "if": "x"})
    assert not _accepts(compiled.grammar, {"not": "1", "if": "x"})


def test_modes_hash_apart_and_are_checked():
    ir = [PyConstraintIR("s", json_schema=json.dumps(OBJ))]
    assert constraints_hash(ir) != constraints_hash(ir, "relaxed")
    assert constraints_hash(ir) == constraints_hash(ir, "strict")
    with pytest.raises(InvalidRequestError, match="schema_mode"):
        compile_constraints(ir, schema_mode="lenient")
    with pytest.raises(InvalidRequestError, match="schema_mode"):
        PyGenerationRequest("p", schema_mode="lenient")
    with pytest.raises(InvalidRequestError, match="schema_mode"):
        Ananke("local", schema_mode="loose")


def test_what_relaxed_mode_cannot_weaken_soundly_is_still_refused():
    # dropping overlapping patternProperties would make their keys "additional" (stricter): refused
    schema = {"type": "object", "patternProperties": {"a*": {}, "aaa*": {}}, "additionalProperties": False}
    with pytest.raises(ConstraintCompileError, match="not disjoint"):
        _compile(schema, "relaxed")
    with pytest.raises(ConstraintCompileError, match="schema is false"):
        _compile({"allOf": [True, False]}, "relaxed")


# ---------------------------------------------------------------------- drafts


def test_draft4_boolean_exclusive_maximum():
    grammar = _compile({"$schema": D4, "type": "integer", "maximum": 5, "exclusiveMaximum": True}).grammar
    assert _accepts(grammar, 4) and not _accepts(grammar, 5)
    grammar = _compile({"$schema": D4, "type": "integer", "maximum": 5, "exclusiveMaximum": False}).grammar
    assert _accepts(grammar, 5) and not _accepts(grammar, 6)


def test_draft7_ref_siblings_are_ignored_but_2020_12_siblings_apply():
    schema = {"$ref": "#/definitions/n", "maximum": 3, "definitions": {"n": {"type": "integer"}}}
    draft7 = _compile({"$schema": D7, **schema}).grammar
    assert _accepts(draft7, 10)  # draft 7: `maximum` next to $ref is ignored
    latest = _compile(schema).grammar
    assert _accepts(latest, 3) and not _accepts(latest, 10)  # 2020-12: both apply


def test_draft7_tuple_items_and_additional_items():
    schema = {
        "$schema": D7, "type": "array", "items": [{"type": "integer"}, {"type": "string"}],
        "additionalItems": False,
    }  # fmt: skip
    grammar = _compile(schema).grammar
    assert _accepts(grammar, [1, "x"]) and not _accepts(grammar, [1, "x", 2]) and not _accepts(grammar, ["x"])


def test_draft4_fragment_ids_are_anchors():
    schema = {
        "$schema": D4, "type": "object", "properties": {"f": {"$ref": "#field"}},
        "definitions": {"field": {"id": "#field", "type": "string"}},
    }  # fmt: skip
    grammar = _compile(schema).grammar
    assert _accepts(grammar, {"f": "x"}) and not _accepts(grammar, {"f": 1})


def test_unknown_schema_dialect_is_refused():
    with pytest.raises(ConstraintCompileError, match=r"unsupported \$schema.*draft-04"):
        _compile({"$schema": "http://json-schema.org/draft-03/schema#", "type": "string"})


# ---------------------------------------------------------------------- generation, embedded model


@pytest.fixture(scope="module")
def client() -> Ananke:
    return Ananke("local", timeout_secs=120, schema_mode="relaxed")


@pytest.mark.model
async def test_relaxed_output_that_breaks_the_full_schema_is_resampled_and_reported_violated(client):
    # The relaxed grammar admits exactly one document, [1,1], and uniqueItems rejects it: every
    # attempt fails, and the response says so.
    schema = {"type": "array", "items": {"enum": [1]}, "minItems": 2, "maxItems": 2, "uniqueItems": True}
    request = PyGenerationRequest(
        "Two ones.", [PyConstraintIR("pair", json_schema=json.dumps(schema))], 16, 0.0
    )
    response = await client.generate(request)
    assert response.text == "[1,1]"
    assert response.metadata.attempts == 3  # the default for relaxed schemas
    assert response.metadata.relaxed == ["pair: /uniqueItems: not enforced"]
    assert not response.validation.all_satisfied
    assert response.validation.violated == ["pair"]
    assert "non-unique" in response.validation.errors["pair"]


@pytest.mark.model
async def test_relaxed_output_that_satisfies_the_full_schema_takes_one_attempt(client):
    # `not` is dropped while decoding; no output can break it (a string "x" has no key to go in)
    schema = {**OBJ, "required": ["a"], "additionalProperties": False, "not": NOT_B_THREES}
    schema["properties"] = {"a": OBJ["properties"]["a"]}
    constraint = PyConstraintIR("no_b", json_schema=json.dumps(schema))
    response = await client.generate(PyGenerationRequest("Give a as 3.", [constraint], 24, 0.0))
    assert response.validation.all_satisfied, response.validation.errors
    assert response.metadata.attempts == 1
    assert response.metadata.relaxed == ["no_b: /not: not enforced"]


@pytest.mark.model
async def test_request_mode_overrides_the_client_default(client):
    schema = json.dumps({**OBJ, "not": NOT_B_THREES})
    request = PyGenerationRequest(
        "x", [PyConstraintIR("s", json_schema=schema)], 8, 0.0, schema_mode="strict"
    )
    with pytest.raises(ConstraintCompileError, match="not"):
        await client.generate(request)


@pytest.mark.parametrize("closed_objects", [False, True])
def test_plain_unevaluated_keywords_are_the_additional_ones_they_mean(closed_objects):
    """With nothing applied in place beside them, `unevaluatedProperties`/`unevaluatedItems` say
    what `additionalProperties`/`items` say: strict mode compiles them, exactly."""
    properties = {**OBJ, "patternProperties": {"^x": {"type": "boolean"}}, "unevaluatedProperties": False}
    items = {"type": "array", "prefixItems": [{"type": "integer"}], "unevaluatedItems": {"type": "string"}}
    cases = [
        (properties, [{"a": 1}, {"a": 1, "xy": True}, {}], [{"a": 1, "c": 2}, {"xy": 1}]),
        (items, [[1], [1, "s", "t"], []], [[1, 2], ["s"]]),
        # draft-07 has no such keyword: it is ignored there, so only a relaxed compile names it
        ({"$schema": D7, **OBJ, "unevaluatedProperties": False}, None, None),
    ]
    for schema, valid, invalid in cases:
        if valid is None:
            with pytest.raises(ConstraintCompileError, match="unevaluatedProperties"):
                _compile(schema, closed_objects=closed_objects)
            continue
        compiled = _compile(schema, closed_objects=closed_objects)
        assert compiled.relaxed == ()
        for instance in valid:
            assert _accepts(compiled.grammar, instance), instance
        for instance in invalid:
            assert not _accepts(compiled.grammar, instance), instance


# (schema, valid, invalid): each `not` has a positive spelling, which strict mode enforces exactly
NOTS = [
    ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"not": {}}}},
     [{"a": 1}, {}], [{"b": 1}, {"a": 1, "b": None}]),
    ({**OBJ, "not": {"required": ["b"]}}, [{"a": 1}, {}], [{"b": "x"}, {"a": 1, "b": "x"}, 3, "s"]),
    ({**OBJ, "not": {"required": ["a", "b"]}}, [{"a": 1}, {"b": "x"}, {}], [{"a": 1, "b": "x"}, [], None]),
    ({"not": {"type": ["string", "object"]}}, [1, 2.5, None, True, [1]], ["s", {}]),
    ({"type": ["integer", "string"], "not": {"type": "number"}}, ["s"], [1, 2.5]),
    ({"properties": {"init": {"type": "string", "not": {"enum": ["upstart", "up"]}}}},
     [{"init": "systemd"}, {"init": "u"}, {"init": "upstar"}, {"init": "upstarts"}, {"init": ""}],
     [{"init": "upstart"}, {"init": "up"}]),
    ({"not": {"const": "x", "description": "anything but x"}}, [1, "y", "", "xx", None, {}], ["x"]),
    ({"type": "string", "pattern": "^a", "not": {"enum": ["ab"]}}, ["a", "abc"], ["ab", "b"]),
    ({"type": "integer", "not": {"enum": ["1"]}}, [1], ["1"]),  # vacuous: no integer is "1"
    ({"type": "integer", "not": False}, [1], ["1"]),
    ({**OBJ, "not": {"properties": {"a": NUM, "b": STR}, "required": ["a", "b"]}},
     [{"a": 1}, {"b": "x"}, {}], [{"a": 1, "b": "x"}]),
    ({"not": {"properties": {"a": STR, "b": {"const": "x"}}}},
     [{"a": 1}, {"b": "y"}, {"a": 1, "b": "x"}], [{}, {"a": "s"}, {"b": "x"}, {"a": "s", "b": "x"}, 3, "s"]),
    ({"not": {"properties": {"f": STR, "g": STR, "h": {}}, "required": ["f", "g", "h"]}},
     [{"f": "a"}, {"f": 1, "g": "b", "h": 0}, {"f": "a", "g": "b"}], [{"f": "a", "g": "b", "h": None}, 1]),
    ({"not": {"minimum": 3}}, [2, 2.5, -1], [3, 4.5, "s", None]),
    ({"not": {"exclusiveMaximum": 0}}, [0, 1.5], [-1, -0.5, "x"]),
    ({"type": ["integer", "string"], "not": {"type": "integer", "maximum": 5}}, [6, "s"], [5, 1, 5.5]),
    ({"not": {"minLength": 2, "maxLength": 3}}, ["", "a", "abcd"], ["ab", "abc", 1]),
    ({"type": "array", "not": {"minItems": 1}}, [[]], [[1]]),
    ({"not": {"type": "string", "minLength": 0}}, [1, None], ["", "a"]),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "valid", "invalid"), NOTS)
def test_nots_with_a_positive_meaning_are_enforced_exactly(schema, valid, invalid):
    _assert_exact(schema, valid, invalid)


def test_nots_without_a_positive_meaning_stay_as_written():
    inners = [{"type": "integer"}, {"multipleOf": 3}, {"pattern": "^x"}, {"enum": ["a", [1]]}, NOT_B_THREES]
    for inner in inners:
        with pytest.raises(ConstraintCompileError, match="not"):
            _compile({"not": inner})
        assert _compile({"not": inner}, "relaxed").relaxed == ("s: /not: not enforced",)
    with pytest.raises(ConstraintCompileError, match="Unsatisfiable"):  # nothing is valid at all
        _compile({"type": "object", "properties": {"a": {"not": {}}}, "required": ["a"]}, "relaxed")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.text(alphabet='ab"\\\né😀 ', max_size=4), min_size=1, max_size=5),
    tries=st.lists(st.text(alphabet='ab"\\\né😀 ', max_size=5), max_size=12),
)
def test_a_not_enum_pattern_takes_no_listed_string_and_every_plain_other(values, tries):
    """The pattern for `not: {enum: strings}` never admits a listed string; it admits every other
    string, save one that leaves the listed ones by a control character, quote or backslash."""
    grammar = _compile({"type": "string", "not": {"enum": values}}).grammar
    for text in [*tries, *values]:
        matcher = llg.LLMatcher(byte_tokenizer(), grammar, log_level=0)
        encoded = json.dumps(text, ensure_ascii=False).encode()  # llguidance writes UTF-8, not \u
        accepted = matcher.consume_tokens(list(encoded)) and matcher.is_accepting()
        if text in values:
            assert not accepted, (values, text)
        elif not any(c in text for c in '"\\\n'):
            assert accepted, (values, text)


DEPENDENT = [  # (schema, valid, invalid): enforced exactly, as alternatives per key
    ({**OBJ, "dependentRequired": {"a": ["b"]}}, [{"a": 1, "b": "x"}, {"b": "x"}, {}], [{"a": 1}]),
    ({"$schema": D4, **OBJ, "dependencies": {"a": ["b"], "b": {"required": ["a"]}}},
     [{"a": 1, "b": "x"}, {}], [{"a": 1}, {"b": "x"}]),
    ({**OBJ, "dependentSchemas": {"b": {"properties": {"a": {"minimum": 5}}}}},
     [{"a": 1}, {"a": 5, "b": "x"}, {"b": "x"}], [{"a": 1, "b": "x"}]),
    ({**OBJ, "dependentSchemas": {"a": False}}, [{"b": "x"}, {}], [{"a": 1}]),
]  # fmt: skip


@pytest.mark.parametrize("closed_objects", [False, True])
@pytest.mark.parametrize(("schema", "valid", "invalid"), DEPENDENT)
def test_dependencies_are_enforced_as_alternatives(schema, valid, invalid, closed_objects):
    compiled = _assert_exact(schema, valid, invalid, closed_objects)
    if closed_objects and schema is not DEPENDENT[2][0]:  # keys only: the object is still closed
        assert compiled.closed == ("s: /",)
        assert not _accepts(compiled.grammar, {"a": 1, "b": "x", "c": 0})


IFS = [  # (schema, valid, invalid): exact where the negation of `if` has a positive spelling
    ({"type": "object", "properties": {"a": STR, "b": STR, "c": STR},
      "if": {"properties": {"c": {"enum": ["ghi"]}}}, "then": {"required": ["a", "b", "c"]},
      "else": {"required": ["a", "c"]}},
     [{"a": "x", "b": "y", "c": "ghi"}, {"a": "x", "c": "z"}, {"a": "x", "b": "y", "c": "z"}],
     [{"a": "x", "c": "ghi"}, {"c": "z"}, {}]),
    ({"type": "object", "properties": {"kind": {"type": "string"}, "i18n": {"type": "object"}},
      "if": {"properties": {"kind": {"const": "library"}}}, "then": {"not": {"required": ["i18n"]}}},
     [{"kind": "library"}, {"kind": "app", "i18n": {}}], [{"kind": "library", "i18n": {}}, {"i18n": {}}]),
    ({"if": True, "then": {"const": "then"}, "else": {"const": "else"}}, ["then"], ["else", 1]),
    ({"if": False, "then": {"const": "then"}, "else": {"const": "else"}}, ["else"], ["then"]),
    ({"then": {"const": 0}}, [1, "x"], []),  # no `if`: no assertion
    ({"if": {"const": "a"}, "then": False}, ["b", 1], ["a"]),
    ({"if": {"type": "string"}, "then": {"minLength": 2}, "else": {"type": "integer"}},
     ["ab", 3], ["a", 2.5, None]),
]  # fmt: skip


@pytest.mark.parametrize("closed_objects", [False, True])
@pytest.mark.parametrize(("schema", "valid", "invalid"), IFS)
def test_ifs_with_a_positive_negation_are_enforced_exactly(schema, valid, invalid, closed_objects):
    compiled = _assert_exact(schema, valid, invalid, closed_objects)
    if closed_objects and "properties" in schema:  # the branches name declared keys only
        assert compiled.closed == ("s: /",)


AREA = {"type": "object", "properties": {"r": NUM, "l": NUM, "w": NUM}}
ONE_OFS = [  # (schema, valid, invalid): a oneOf with one branch every valid instance meets anyway
    ({**AREA, "required": ["r"], "oneOf": [{"required": ["r"]}, {"required": ["l", "w"]}]},
     [{"r": 1}, {"r": 1, "l": 2}], [{"r": 1, "l": 1, "w": 1}, {"l": 1, "w": 1}]),
    ({"oneOf": [True, False, STR]}, [1, None, {}], ["s"]),
    ({"type": "string", "oneOf": [{"_format": "email"}, {"enum": [""]}]}, ["a@b.c", "x"], ["", 1]),
    ({"type": "string", "oneOf": [{"type": "string", "description": "any"}, {"enum": ["a", "b"]}]},
     ["c", ""], ["a", "b", 1]),
]  # fmt: skip


TWO_KINDS = {
    "one": {"type": "object", "properties": {"red": STR}},
    "two": {"type": "object", "properties": {"blue": STR}},
}
EXACT_ONE_OFS = [  # (schema, valid, invalid): overlapping branches, each with a positive negation
    ({"oneOf": [{"required": ["p"]}, {"required": ["q"]}]}, [{"p": 1}, {"q": 1}], [{"p": 1, "q": 1}, {}, 1]),
    ({"type": "object",
      "properties": {"thing": {"oneOf": [{"$ref": "#/$defs/one"}, {"$ref": "#/$defs/two"}]}},
      "$defs": TWO_KINDS},
     [{"thing": {"red": 1}}, {"thing": {"blue": 2}}, {"thing": {"red": "a", "blue": 3}}],
     [{"thing": {}}, {"thing": {"red": "a", "blue": "b"}}, {"thing": {"red": 1, "blue": 2}}, {"thing": 1}]),
    ({"oneOf": [{"type": "string", "maxLength": 3}, {"type": "string", "minLength": 2}]},
     ["a", "abcd"], ["ab", "abc", 1]),
]  # fmt: skip


@pytest.mark.parametrize("closed_objects", [False, True])
@pytest.mark.parametrize(("schema", "valid", "invalid"), ONE_OFS + EXACT_ONE_OFS)
def test_one_ofs_with_a_positive_spelling_are_enforced_exactly(schema, valid, invalid, closed_objects):
    _assert_exact(schema, valid, invalid, closed_objects)


@pytest.mark.parametrize(
    "schema",
    [
        {**AREA, "required": ["r", "l", "w"], "oneOf": [{"required": ["r"]}, {"required": ["l", "w"]}]},
        {"oneOf": [True, {"description": "anything"}]},
    ],
)
def test_a_one_of_two_branches_always_hold_is_unsatisfiable_in_both_modes(schema):
    """No instance can match exactly one branch: a clear refusal rather than outputs the validator
    will reject (relaxed mode would otherwise take the oneOf as an anyOf)."""
    tries = [{}, {"r": 1, "l": 1, "w": 1}, 1]
    assert not any(jsonschema.Draft202012Validator(schema).is_valid(v) for v in tries)
    for mode in ("strict", "relaxed"):
        with pytest.raises(ConstraintCompileError, match="Unsatisfiable"):
            _compile(schema, mode)


ROOTED = {  # the root declares the anchor: it is outermost in every dynamic scope
    "$id": "https://example.com/root",
    "$ref": "list",
    "$defs": {
        "s": {"$dynamicAnchor": "item", "type": "string"},
        "list": {"$id": "list", "type": "array", "items": {"$dynamicRef": "#item"},
                 "$defs": {"bookend": {"$dynamicAnchor": "item"}}},
    },
}  # fmt: skip
DYNAMIC = [  # (schema, valid, invalid): $dynamicRefs that can only land where a $ref would
    ({"type": "array", "items": {"$dynamicRef": "#item"}, "$defs": {"s": {"$dynamicAnchor": "item", **STR}}},
     [["a"], []], [[1], "a"]),
    ({"type": "array", "items": {"$dynamicRef": "#/$defs/s"}, "$defs": {"s": STR}}, [["a"]], [[1]]),
    (ROOTED, [["a"], []], [[1], ["a", None]]),
    ({"properties": {"a": {"$dynamicRef": "#n"}, "b": {"$ref": "#n"}},
      "$defs": {"n": {"$anchor": "n", **NUM}}},
     [{"a": 1, "b": 2.5}], [{"a": "x"}, {"b": "x"}]),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "valid", "invalid"), DYNAMIC)
def test_dynamic_refs_with_one_possible_target_are_refs(schema, valid, invalid):
    _assert_exact(schema, valid, invalid)


def test_dynamic_refs_with_several_possible_targets_stay_refused():
    """Two resources declare the anchor and the root does not: which one applies depends on
    the path taken (through `a` the items are strings, through `b` integers)."""
    schema = {
        "$id": "https://example.com/root",
        "anyOf": [{"$ref": "a"}, {"$ref": "b"}],
        "$defs": {
            "a": {"$id": "a", "$ref": "list", "$defs": {"i": {"$dynamicAnchor": "item", "type": "string"}}},
            "b": {"$id": "b", "$ref": "list", "$defs": {"i": {"$dynamicAnchor": "item", "type": "integer"}}},
            "list": {"$id": "list", "type": "array", "items": {"$dynamicRef": "#item"},
                     "$defs": {"i": {"$dynamicAnchor": "item"}}},
        },
    }  # fmt: skip
    checker = jsonschema.Draft202012Validator(schema)
    assert checker.is_valid(["x"]) and checker.is_valid([1]) and not checker.is_valid(["x", 1])
    with pytest.raises(ConstraintCompileError, match=r"\$dynamic"):
        _compile(schema)


def test_a_schema_llguidance_refuses_rewritten_compiles_as_written():
    """The rewritten `not` puts an `allOf` beside a circular `$ref`, which llguidance refuses
    ("circular references with sibling keys"), so the schema is compiled as written — as
    before the rewrites: strict mode names the `not`, relaxed mode leaves it out."""
    schema = {
        "$defs": {
            "n": {
                "type": "object",
                "properties": {"c": {"$ref": "#/$defs/n", "not": {"required": ["a", "b"]}}},
            }
        },
        "$ref": "#/$defs/n",
    }
    with pytest.raises(ConstraintCompileError, match=r"keyword\(s\): not"):
        _compile(schema)
    assert _compile(schema, "relaxed").relaxed == ("s: /$defs/n/properties/c/not: not enforced",)


def test_the_forbidden_property_idiom_is_exact():
    """A definition that admits nothing (`not` of every type), referred to by the properties that
    may not appear: llguidance refuses the definition itself, so each reference becomes
    `allOf: [false]` where it stands."""
    every = ["array", "boolean", "integer", "number", "null", "object", "string"]
    for none in ({"not": {"type": every}}, False):
        schema = {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "gone": {"$ref": "#/$defs/none"}},
            "$defs": {"none": none},
        }
        _assert_exact(schema, [{"a": 1}, {}], [{"gone": 1}, {"a": 1, "gone": None}])
