"""Outputs that finish valid (issue 15): budget-aware completion, closed objects, the loop guard
and sampling controls — with the real model and the real grammars. Behaviour, not timing."""

from __future__ import annotations

import json

import jsonschema
import llguidance as llg
import numpy as np
import pytest

from ananke import Ananke, ConstraintCompileError, InvalidRequestError, PyConstraintIR, PyGenerationRequest
from ananke.constraints import compile_constraints, completion
from ananke.constraints.compiler import byte_tokenizer
from ananke.constraints.completion import shortest_completion
from ananke.constraints.schemas import close_objects
from ananke.engines.steering import SamplingParams, loop_exit, penalise, repeating, sample
from tests.test_compiler import SEED_EMAIL

EMAIL = PyConstraintIR("email", regex_patterns=[SEED_EMAIL])
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array",
                   "items": {"type": "string"}}},
    "required": ["name", "age"],
}  # fmt: skip
GRAMMAR = 'start: "say " WORD (", " WORD)* "."\nWORD: /[a-z]+/'
# Each kind of constraint: one JSON schema, one regex, one Lark grammar, regexes ANDed.
KINDS = {
    "json": PyConstraintIR("person", json_schema=json.dumps(PERSON)),
    "regex": EMAIL,
    "grammar": PyConstraintIR("words", grammar=GRAMMAR),
    "anded": PyConstraintIR("both", regex_patterns=[r"[a-z ]+\.", r".*e.*"]),
}
LONG = "Write a very long answer, with as many words and details as you can think of."


def _matcher(grammar: str) -> llg.LLMatcher:
    return llg.LLMatcher(byte_tokenizer(), grammar, log_level=0)


# ---------------------------------------------------------------- the completion search


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_completion_found_is_accepted_from_every_prefix(kind):
    """From each prefix of a valid output, the search returns bytes the grammar accepts after it."""
    grammar = compile_constraints([KINDS[kind]]).grammar
    outputs = {
        "json": b'{"name":"Ada Lovelace","age":36,"tags":["math","poetry"]}',
        "regex": b"ada.lovelace@analytical.example.org",
        "grammar": b"say hello, world, again.",
        "anded": b"the engine works.",
    }
    text = outputs[kind]
    for cut in range(len(text)):
        matcher = _matcher(grammar)
        assert matcher.consume_tokens(list(text[:cut]))
        found = shortest_completion(matcher, text[:cut][-8:])
        assert found is not None, (kind, text[:cut])
        assert matcher.consume_tokens(list(found)) and matcher.is_accepting(), (text[:cut], found)


def test_the_completion_takes_counted_runs_and_required_keys():
    schema = {"type": "object", "properties": {"md5": {"type": "string", "pattern": "^[a-f0-9]{32}$"},
              "id": {"type": "string", "format": "uuid"}}, "required": ["md5", "id"]}  # fmt: skip
    grammar = compile_constraints([PyConstraintIR("s", json_schema=json.dumps(schema))]).grammar
    found = shortest_completion(_matcher(grammar))
    assert found is not None
    instance = json.loads(found)
    assert len(instance["md5"]) == 32 and len(instance["id"]) == 36


def test_the_completion_tries_other_letters_where_the_first_leads_nowhere():
    """Where letters of one class choose different things (a key, a digit range), the search does
    not stop at the first: here the key `flag` (a pattern it cannot spell) comes first, `id` is
    the way out, and an integer of at least 1 cannot start with `0`."""
    schema = {"type": "object", "properties": {
        "flag": {"type": "string", "pattern": "^alpha|beta|rc|stable$"},
        "id": {"type": "string"}, "n": {"type": "integer", "minimum": 1}}, "required": ["n"]}  # fmt: skip
    grammar = compile_constraints([PyConstraintIR("s", json_schema=json.dumps(schema))]).grammar
    for prefix in (b'{"', b'{"n":'):
        matcher = _matcher(grammar)
        assert matcher.consume_tokens(list(prefix))
        # the cheapest descent (one byte per class, first) already; it failed on a large schema
        # before the costlier ones ran out of nodes. Bounded by its node budget, not by a clock
        first = completion._Search(prefix[-8:], completion.SearchLimits())
        found = first.descend(completion._Node(matcher.deep_copy(), b""), 1, deadline=float("inf"))
        assert found is not None, prefix
        assert matcher.consume_tokens(list(found)) and matcher.is_accepting(), (prefix, found)


# ---------------------------------------------------------------- closed objects


def test_close_objects_only_narrows():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"x": {}}}, "b": {"not": {"properties": {}}}},
        "$defs": {"Open": {"properties": {"y": {}}}, "Plain": {"properties": {"z": {}}}},
        "allOf": [{"$ref": "#/$defs/Open"}],
    }
    closed = close_objects(schema)
    # not the root (it composes with allOf), not Open (an allOf reaches it), not under `not`
    assert closed == ["/properties/a", "/$defs/Plain"]
    assert schema["properties"]["a"]["additionalProperties"] is False
    explicit = {"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "integer"}}
    assert close_objects(explicit) == [] and explicit["additionalProperties"] == {"type": "integer"}
    assert close_objects({"type": "object"}) == []  # no properties: a free-form object stays free


def test_branches_beside_the_parents_keys_stay_open():
    """A closed branch would forbid the key its parent requires: nothing could be generated."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "anyOf": [{"properties": {"b": {"type": "string"}}}, {"properties": {"c": {"type": "string"}}}],
    }
    assert close_objects(schema) == []
    compiled = compile_constraints([PyConstraintIR("s", json_schema=json.dumps(schema))])
    matcher = _matcher(compiled.grammar)
    assert matcher.consume_tokens(list(b'{"a":"x","b":"y"}')) and matcher.is_accepting()
    alone = {"anyOf": [{"properties": {"b": {}}}, {"properties": {"c": {}}}]}  # nothing beside: closed
    assert close_objects(alone) == ["/anyOf/0", "/anyOf/1"]


def test_closed_objects_never_take_undeclared_keys_and_opting_out_restores_them():
    constraint = [PyConstraintIR("person", json_schema=json.dumps(PERSON))]
    closed = compile_constraints(constraint)
    opened = compile_constraints(constraint, closed_objects=False)
    assert closed.closed == ("person: /",) and opened.closed == () and closed.hash != opened.hash
    extra = b'{"name":"a","age":1,"nickname":"b"}'
    for compiled, accepts in ((closed, False), (opened, True)):
        matcher = _matcher(compiled.grammar)
        assert (matcher.consume_tokens(list(extra)) and matcher.is_accepting()) is accepts


def test_the_completion_spells_the_words_of_a_pattern():
    """`^allow|deny$` takes any string that starts with allow or ends with deny: one byte per
    class cannot spell either, so string content also tries the pattern's own words."""
    schema = {"type": "object", "properties": {"effect": {"type": "string", "pattern": "^allow|deny$"}},
              "required": ["effect"]}  # fmt: skip
    grammar = compile_constraints([PyConstraintIR("s", json_schema=json.dumps(schema))]).grammar
    assert completion.pattern_words(grammar) == (b"allow", b"deny")
    regex = compile_constraints([PyConstraintIR("r", regex_patterns=[r"x(yes|no)+[abc]{2}\d"])]).grammar
    assert completion.pattern_words(regex) == (b"yes", b"no")
    for prefix in (b'{"effect":"', b'{"effect":"maybe '):
        matcher = _matcher(grammar)
        assert matcher.consume_tokens(list(prefix))
        found = shortest_completion(matcher, prefix[-8:], words=completion.pattern_words(grammar))
        assert found is not None, prefix
        assert matcher.consume_tokens(list(found)) and matcher.is_accepting(), (prefix, found)


KIND = {"type": "object", "oneOf": [
    {"properties": {"kind": {"enum": ["a"]}, "x": {"type": "integer"}}},
    {"properties": {"kind": {"enum": ["b", "c"]}, "y": {"type": "string"}}}]}  # fmt: skip
TEXT = {"type": "string"}
EITHER = {"type": "object", "oneOf": [{"required": ["name", "s"]}, {"required": ["name", "u"]}],
          "properties": {"name": TEXT, "s": TEXT, "u": TEXT}}  # fmt: skip
PAIR = {"oneOf": [{"properties": {"foo": {"type": "string"}}, "required": ["foo"]},
                  {"properties": {"bar": {"type": "integer"}}, "required": ["bar"]}]}  # fmt: skip
# instances of each branch, of both, of none
TRIES = {
    "KIND": [
        {},
        {"kind": "a"},
        {"kind": "b", "y": "s"},
        {"x": 1},
        {"kind": "a", "x": 1, "y": "z"},
        {"y": "s"},
    ],
    "EITHER": [
        {"name": "n", "s": "x"},
        {"name": "n", "u": "y"},
        {"name": "n", "s": "x", "u": "y"},
        {"name": "n"},
    ],
    "PAIR": [{"foo": "x"}, {"bar": 1}, {"foo": "x", "bar": 1}, "text", 5, {}],
}


@pytest.mark.parametrize(("schema", "instances"), [(KIND, TRIES["KIND"]), (EITHER, TRIES["EITHER"]),
                                                   (PAIR, TRIES["PAIR"])])  # fmt: skip
def test_one_of_branches_are_kept_apart_and_only_narrow(schema, instances):
    """With closed objects a oneOf whose branches overlap is decoded with each branch narrowed so
    that no output matches two (a discriminator made required, another branch's required key
    forbidden): every instance the grammar takes is valid under the schema as written, each
    branch can still be generated, and llguidance proves the oneOf (strict mode compiles it)."""
    constraint = [PyConstraintIR("s", json_schema=json.dumps(schema))]
    if schema is EITHER:  # each branch has a positive negation: exact with open objects as well
        assert compile_constraints(constraint, closed_objects=False).relaxed == ()
    else:
        with pytest.raises(ConstraintCompileError, match="oneOf"):
            compile_constraints(constraint, closed_objects=False)
    compiled = compile_constraints(constraint)
    assert "s: /oneOf" in compiled.closed and compiled.relaxed == ()
    taken = 0
    for instance in instances:
        matcher = _matcher(compiled.grammar)
        if (
            matcher.consume_tokens(list(json.dumps(instance, separators=(",", ":")).encode()))
            and matcher.is_accepting()
        ):
            taken += 1
            assert jsonschema.Draft202012Validator(schema).is_valid(instance), instance
    assert taken >= 2  # one instance of each branch at least


def test_one_of_branches_that_cannot_be_told_apart_stay_as_written():
    strings = {"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]}
    assert close_objects(strings) == [] and strings["oneOf"][0] == {"type": "string"}
    negated = {"not": json.loads(json.dumps(KIND))}  # narrowing under `not` would widen the whole
    assert close_objects(negated) == [] and negated == {"not": KIND}


# ---------------------------------------------------------------- loop guard and sampling


def test_repeating_finds_a_run_at_the_end_only():
    assert repeating([5, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]) == 3
    assert repeating([7] * 12) == 1
    assert repeating([7] * 11) == 0  # shorter than 12 tokens
    assert repeating([1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 9]) == 0  # it ended
    assert repeating([1, 2, 3] * 4, since=3) == 0  # only 3 repeats after the last intervention
    assert loop_exit(b'","b":0}', in_string=True) == b'"'
    assert loop_exit(b'""]}', in_string=False) == b'""]'
    assert loop_exit(b"@a.aa", in_string=False) == b"@a.aa"


def test_sampling_never_picks_a_masked_token():
    rng = np.random.default_rng(0)
    logits = np.array([5.0, -np.inf, 1.0, -np.inf, 0.5], dtype=np.float32)
    params = SamplingParams(temperature=2.0, top_p=0.99, min_p=0.01, repetition_penalty=0.5,
                            frequency_penalty=-2.0, presence_penalty=-2.0)  # fmt: skip
    from collections import Counter

    penalise(logits, params, Counter({1: 3, 2: 1}))
    assert logits[1] == -np.inf  # a penalty that raises a token never revives a forbidden one
    assert {sample(logits, params, rng) for _ in range(200)} <= {0, 2, 4}
    greedy = SamplingParams(temperature=1.0, top_k=1)
    assert sample(np.array([0.0, 3.0, 2.0]), greedy, rng) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"top_p": 0},
        {"top_p": 1.5},
        {"top_k": -1},
        {"min_p": 1.5},
        {"repetition_penalty": 0},
        {"frequency_penalty": 3},
        {"presence_penalty": -2.5},
        {"top_k": 1.5},
    ],
)
def test_sampling_values_out_of_range_are_refused(bad):
    with pytest.raises(InvalidRequestError, match=next(iter(bad))):
        PyGenerationRequest("x", **bad)


# ---------------------------------------------------------------- with the model


@pytest.fixture(scope="module")
def client() -> Ananke:
    return Ananke("local", timeout_secs=300)


@pytest.mark.model
@pytest.mark.parametrize("kind", list(KINDS))
async def test_every_budget_that_can_hold_an_output_ends_complete(client, kind):
    """For budgets from the shortest output up, at temperature 1 with a prompt that asks for
    length: the output is accepted by the grammar, finish_reason is stop, within max_tokens."""
    constraint = KINDS[kind]
    compiled = await client.compile_constraints([constraint])
    engine = client._backend.engine.runner()
    shortest, _ = engine.shortest_output(compiled["schema"])
    for extra, seed in zip((0, 1, 3, 8, 20), range(5), strict=True):
        budget = shortest + extra
        response = await client.generate(
            PyGenerationRequest(LONG, [constraint], max_tokens=budget, temperature=1.0, seed=seed)
        )
        meta = response.metadata
        assert meta.finish_reason == "stop", (kind, budget, response.text)
        assert meta.tokens_generated <= budget
        assert response.validation.all_satisfied, (kind, budget, response.text, response.validation)
        if meta.budget_closed:
            assert 0 < meta.closing_tokens <= budget


@pytest.mark.model
async def test_a_budget_too_small_for_any_output_is_refused_naming_both_numbers(client):
    constraint = PyConstraintIR("person", json_schema=json.dumps(PERSON))
    with pytest.raises(InvalidRequestError, match=r"max_tokens=2 .* takes \d+ tokens"):
        await client.generate(PyGenerationRequest("A person.", [constraint], max_tokens=2))


@pytest.mark.model
async def test_the_loop_guard_steers_out_of_a_repetition(client):
    """A repetition penalty below 1 makes the model repeat itself; the guard ends the loop by
    closing the array, the unguarded run repeats until the budget closes it."""
    fruits = '{"type": "array", "items": {"enum": ["apple", "pear"]}, "minItems": 1}'
    request = dict(
        prompt="List fruits, repeat them many times.", constraints_ir=[PyConstraintIR("fruits", fruits)],
        max_tokens=120, temperature=0.0, repetition_penalty=0.2,
    )  # fmt: skip
    guarded = await client.generate(PyGenerationRequest(**request))
    assert guarded.metadata.loop_breaks >= 1, guarded.text
    assert guarded.validation.all_satisfied and guarded.metadata.finish_reason == "stop"
    unguarded = await client.generate(PyGenerationRequest(**request, loop_guard=False))
    assert unguarded.metadata.loop_breaks == 0 and unguarded.validation.all_satisfied
    assert unguarded.metadata.tokens_generated > guarded.metadata.tokens_generated


@pytest.mark.model
async def test_generated_objects_use_declared_keys_only_unless_opened(client):
    constraint = PyConstraintIR("person", json_schema=json.dumps(PERSON))
    prompt = "Describe a person as JSON with many fields: name, age, city, email, job, hobbies."
    for seed in range(3):
        response = await client.generate(
            PyGenerationRequest(prompt, [constraint], max_tokens=96, temperature=1.0, seed=seed)
        )
        assert response.validation.all_satisfied, response.text
        assert set(json.loads(response.code)) <= set(PERSON["properties"]), response.text


@pytest.mark.model
async def test_top_k_one_is_greedy(client):
    base = dict(prompt="Name a colour.", constraints_ir=[EMAIL], max_tokens=24, seed=3)
    greedy = await client.generate(PyGenerationRequest(**base, temperature=0.0))
    top1 = await client.generate(PyGenerationRequest(**base, temperature=1.5, top_k=1))
    assert greedy.text == top1.text
