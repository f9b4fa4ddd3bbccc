import json
import os
import re
import subprocess
import sys
import warnings

import llguidance as llg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ananke import Ananke, ConstraintCompileError, PyConstraintIR
from ananke.constraints import CompileLimits, compile_constraints, constraints_hash
from ananke.constraints.compiler import byte_tokenizer

SEED_SCHEMA = (
    '{"type": "object", "properties": {"result": {"type": "string"}, "status": {"type": "integer"}}}'
)
SEED_GRAMMAR = r"""root: "{" (key ":" value ("," key ":" value)*)? "}"
key: /"[a-z_]+"/
value: /[0-9]+/ | key
"""
SEED_EMAIL = r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$"

SEED_EXAMPLES = [
    [PyConstraintIR("result_json", json_schema=SEED_SCHEMA)],
    [PyConstraintIR("kv_grammar", grammar=SEED_GRAMMAR)],
    [PyConstraintIR("email", regex_patterns=[SEED_EMAIL])],
]


@pytest.mark.parametrize("constraints", SEED_EXAMPLES, ids=["json", "grammar", "regex"])
async def test_seed_examples_compile(constraints):
    result = await Ananke("local").compile_constraints(constraints)
    assert set(result) >= {"hash", "compiled_at", "schema"}
    assert len(result["hash"]) == 64 and result["schema"]
    assert result["enforced"] and not result["validated_only"]


def test_hash_is_stable_across_processes():
    code = (
        "from ananke import PyConstraintIR as C; from ananke.constraints import constraints_hash;"
        f"print(constraints_hash([C('result_json', json_schema={SEED_SCHEMA!r})]))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }  # fmt: skip
    assert outputs == {constraints_hash(SEED_EXAMPLES[0])}


def test_different_lists_give_different_hashes():
    hashes = {constraints_hash(c) for c in SEED_EXAMPLES}
    hashes.add(constraints_hash([PyConstraintIR("other_name", json_schema=SEED_SCHEMA)]))
    hashes.add(constraints_hash(SEED_EXAMPLES[0] + SEED_EXAMPLES[2]))
    hashes.add(constraints_hash([]))
    assert len(hashes) == 6


def test_gbnf_and_start_rule_forms_compile():
    for grammar in ['root ::= "a" [0-9]+', 'start: "a" /[0-9]+/', '?start: "a"', 'root: "a"']:
        assert compile_constraints([PyConstraintIR("g", grammar=grammar)]).grammar


def test_regexes_are_intersected_and_enforced():
    compiled = compile_constraints(
        [
            PyConstraintIR("a", regex_patterns=["^[a-z]+$", ".*x.*"]),
            PyConstraintIR("b", regex_patterns=[r"\w{3}"]),
        ]
    )
    assert compiled.enforced == ("a:regex[0]", "a:regex[1]", "b:regex[0]")
    assert " & " in compiled.grammar


def test_combination_reports_what_is_only_validated():
    compiled = compile_constraints(
        [
            PyConstraintIR("j", json_schema='{"type": "string"}', regex_patterns=['"a.*"']),
            PyConstraintIR("g", grammar='start: "\\"abc\\""'),
        ]
    )
    assert compiled.enforced == ("j:json_schema",)
    assert compiled.validated_only == ("g:grammar", "j:regex[0]")


def test_empty_list_is_unconstrained():
    compiled = compile_constraints([])
    assert compiled.grammar is None and compiled.enforced == ()


@pytest.mark.parametrize(
    "constraint, fragment",
    [
        (PyConstraintIR("c", json_schema="{not json"), "not valid JSON"),
        (PyConstraintIR("c", json_schema="[1, 2]"), "object or boolean"),
        (PyConstraintIR("c", json_schema='{"not": {"pattern": "^a"}}'), "keyword(s): not"),
        (PyConstraintIR("c", json_schema='{"pattern": "[a-"}'), "unclosed character class"),
        (PyConstraintIR("c", json_schema='{"type": "array", "uniqueItems": true}'), "uniqueItems"),
        (
            PyConstraintIR("c", regex_patterns=["ok", "a(b"]),
            "regex_patterns[1] 'a(b' is invalid at position 1",
        ),
        (PyConstraintIR("c", regex_patterns=["(?<=a)b"]), "look-around"),
        (PyConstraintIR("c", grammar='start: "a"\nfoo: ( "b"'), "\n   2 | foo"),  # the line is shown
        (PyConstraintIR("c", grammar="start: undefined_rule"), "undefined_rule"),
        (PyConstraintIR("c", grammar='x: "a"'), "no start rule"),
        (PyConstraintIR("c", grammar='root ::= "a" (((('), "GBNF"),
        (PyConstraintIR("c"), "sets none of"),
        (PyConstraintIR("c", json_schema='{"$ref": "#"}'), "admits no JSON document"),
        (PyConstraintIR("c", json_schema="[" * 50_000 + "]" * 50_000), "nested too deeply"),
    ],
)
def test_compile_errors_name_constraint_and_cause(constraint, fragment):
    with pytest.raises(ConstraintCompileError, match=re.escape(fragment)) as info:
        compile_constraints([constraint])
    assert info.value.constraint == "c"
    assert isinstance(info.value, RuntimeError)


def test_regexes_without_a_common_match():
    with pytest.raises(ConstraintCompileError, match="no output can match all the regexes"):
        compile_constraints(
            [PyConstraintIR("a", regex_patterns=["a+"]), PyConstraintIR("b", regex_patterns=["b+"])]
        )


def test_deeply_nested_grammar_does_not_crash_the_process():
    """A 20,000-rule chain overflows an 8 MiB native stack; compilation runs on a big one."""
    rules = "\n".join(f'r{i}: "t" r{i + 1} | "e"' for i in range(20_000))
    compiled = compile_constraints([PyConstraintIR("g", grammar=f'start: r0\n{rules}\nr20000: "end"')])
    assert compiled.grammar


def test_unknown_format_is_an_annotation_with_a_warning():
    schema = '{"type": "object", "properties": {"c": {"type": "string", "format": "color"}}}'
    compiled = compile_constraints([PyConstraintIR("s", json_schema=schema)])
    assert compiled.enforced == ("s:json_schema",)
    assert len(compiled.warnings) == 1 and "'color'" in compiled.warnings[0]
    assert '"format"' not in compiled.grammar  # enforced without it, and said so
    known = compile_constraints([PyConstraintIR("d", json_schema='{"type": "string", "format": "date"}')])
    assert known.warnings == () and '"format":"date"' in known.grammar.replace(" ", "")


def test_integral_float_counts_are_accepted():
    compiled = compile_constraints([PyConstraintIR("s", json_schema='{"type": "array", "maxItems": 2.0}')])
    assert compiled.grammar and compiled.warnings == ()


def test_size_cap():
    big = json.dumps({"type": "object", "description": "x" * 2000})
    with pytest.raises(ConstraintCompileError, match="over the 1000-byte cap"):
        compile_constraints([PyConstraintIR("c", json_schema=big)], CompileLimits(max_input_bytes=1000))
    assert compile_constraints([PyConstraintIR("c", json_schema=big)]).grammar


def test_time_budget():
    # 400 alternatives of an exponential-ish regex: real work for the lexer builder.
    heavy = "|".join(f"(a|b)*a(a|b){{{n % 12 + 8}}}" for n in range(400))
    with pytest.raises(ConstraintCompileError, match=r"time budget|limit|fuel|too"):
        compile_constraints([PyConstraintIR("c", regex_patterns=[heavy])], CompileLimits(time_budget_s=0.001))


async def test_compile_error_from_client_is_runtime_error():
    with pytest.raises(RuntimeError, match="uniqueItems"):
        await Ananke("local").compile_constraints([PyConstraintIR("c", json_schema='{"uniqueItems": true}')])


@pytest.mark.parametrize(
    "error, status_class, named",
    [
        ("Parser Error: Current row has 20001 items; max is 2000", "ConstraintCompileError", "2000 Earley"),
        ("lexer error: too many expressions constructed", "ConstraintCompileError", "lexer's work limit"),
        ("too many states: 50001 >= 50000", "ConstraintCompileError", "50000 states"),
        ("NoExtensionBias", "ConstraintCompileError", "dead end"),
        ("<non-verbose/> internal: unexpected token id", "BackendError", "unexpected token id"),
    ],
)
def test_a_matcher_error_mid_decode_is_blamed_on_its_cause(error, status_class, named):
    """llguidance's limits are the constraint's fault (4xx); anything else after compiling is ours."""
    from ananke.constraints.faults import decoding_error

    found = decoding_error(error)
    assert type(found).__name__ == status_class and named in str(found)


def test_a_draft04_subschema_id_in_the_root_document_names_a_place_not_a_new_root():
    """Found by the corpus run: "id": "<root's URI>#rank" on a property became `$id` <root's URI>,
    so the root resolved to that string property and a bare string was accepted."""
    import llguidance as llg

    from ananke.constraints.compiler import byte_tokenizer

    schema = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "id": "http://example.com/rank/01#",
        "type": "object",
        "additionalProperties": False,
        "properties": {"rank": {"id": "http://example.com/rank/01#rank", "type": "string"}},
        "required": ["rank"],
    }
    grammar = compile_constraints([PyConstraintIR("x", json_schema=json.dumps(schema))]).grammar

    def accepts(text: bytes) -> bool:
        matcher = llg.LLMatcher(byte_tokenizer(), grammar, log_level=0)
        return matcher.consume_tokens(list(text)) and matcher.is_accepting()

    assert accepts(b'{"rank":"a"}')
    assert not accepts(b'"abc"')


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.text(alphabet="[]^-&~ab+", min_size=2, max_size=9),
    texts=st.lists(st.text(alphabet="[]^-&~ab+,", max_size=4), min_size=1, max_size=8),
)
@example(pattern="[[ab]-]+", texts=["a-b", "[a-]", "a"])
@example(pattern="[a-b--a]", texts=["a", "-", "+"])
@example(pattern="[+--]", texts=[",", "+", "-", "a"])
def test_character_classes_read_as_json_schema_and_python_read_them(pattern, texts):
    """llguidance's (Rust) regex syntax reads `[` inside a class as a nested class and `&&`, `--`,
    `~~` as set operations; JSON Schema (ECMA-262) and Python read literals there. A `pattern`
    and a regex constraint take exactly the texts Python's `re` matches."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            python = re.compile(pattern)
        except re.error:
            return
    try:
        as_schema = compile_constraints(
            [PyConstraintIR("s", json_schema=json.dumps({"type": "string", "pattern": f"^{pattern}$"}))]
        )
        as_regex = compile_constraints([PyConstraintIR("r", regex_patterns=[pattern])])
    except ConstraintCompileError:
        return  # llguidance refuses a few Python accepts (e.g. an empty class): refused, never misread
    for text in texts:
        expected = python.fullmatch(text) is not None
        for grammar, data in ((as_schema.grammar, json.dumps(text)), (as_regex.grammar, text)):
            matcher = llg.LLMatcher(byte_tokenizer(), grammar, log_level=0)
            assert (matcher.consume_tokens(list(data.encode())) and matcher.is_accepting()) == expected, (
                pattern,
                text,
            )
