"""Syntax checks with tree-sitter: each language passes valid code and catches an error, with its
location; the checks appear in `validate` as `syntax:<language>`."""

from __future__ import annotations

import pytest

from ananke import PyConstraintIR, PyGenerationContext, PyGenerationRequest
from ananke.constraints.syntax import CORE_LANGUAGES, NotChecked, check_syntax, has_parser, normalise_language
from ananke.constraints.validate import validate
from ananke.prompting import language_of
from ananke.responses import syntax_language

# language: (valid code, code with one error, the error's "line L, column C")
CASES = {
    "python": ("def f(x):\n    return x + 1\n", "def f(x):\n    return (x + 1\n", "line 2"),
    "javascript": ("const f = (x) => x + 1;\n", "function f(x) {\n  return x + ;\n}\n", "line 2"),
    "typescript": (
        "function f(x: number): number {\n  return x + 1;\n}\n",
        "function f(x: number): {\n  return x;\n}\n",
        "line ",
    ),
    "go": (
        "package main\n\nfunc f(x int) int {\n\treturn x + 1\n}\n",
        "package main\n\nfunc f(x int) int {\n\treturn x +\n}\n",
        "line ",
    ),
    "rust": ("fn f(x: i32) -> i32 {\n    x + 1\n}\n", "fn f(x: i32) -> i32 {\n    let y = ;\n}\n", "line 2"),
    "java": (
        "class A {\n  int f(int x) { return x + 1; }\n}\n",
        "class A {\n  int f(int x) { return x + 1 }\n}\n",
        "line 2",
    ),
    "c": ("int f(int x) {\n  return x + 1;\n}\n", "int f(int x) {\n  return x + 1\n}\n", "line 2"),
    "cpp": (
        "#include <vector>\nint f(const std::vector<int>& v) { return v.size(); }\n",
        "int f(int x) {\n  return x + ;\n}\n",
        "line 2",
    ),
    "sql": ("SELECT name, age FROM users WHERE age > 30 ORDER BY name;\n", "SELECT a FRM t;\n", "line 1"),
    "bash": ('for f in *.txt; do\n  echo "$f"\ndone\n', 'for f in *.txt; do\n  echo "$f"\n', "line "),
    "json": ('{"a": [1, 2, {"b": null}]}\n', '{"a": [1, 2,, 3]}\n', "line 1"),
    "yaml": ("a: 1\nb:\n  - x\n  - y\n", "a: [1, 2\nb: }\n", "line "),
}


def test_the_issue_languages_are_all_covered():
    assert set(CASES) == set(CORE_LANGUAGES)
    assert all(has_parser(language) for language in CORE_LANGUAGES)


@pytest.mark.parametrize("language", sorted(CASES))
def test_valid_code_passes(language):
    assert check_syntax(CASES[language][0], language) is None


@pytest.mark.parametrize("language", sorted(CASES))
def test_an_error_is_caught_with_its_location(language):
    _, broken, where = CASES[language]
    reason = check_syntax(broken, language)
    assert reason is not None and reason.startswith(where), reason
    assert ", column " in reason.split(":")[0]


def test_the_location_is_the_start_of_the_first_error():
    assert check_syntax("x = 1\ny = (2\n", "python") == "line 2, column 1: unexpected 'y = (2'"
    assert check_syntax("def f(:\n    pass\n", "python") == "line 1, column 7: missing ')'"
    # tree-sitter's recovery wraps the whole broken statement: its start and text are reported
    assert check_syntax("a = 1\nb = 2 +* 3\n", "python") == "line 2, column 1: unexpected 'b = 2 +* 3'"
    assert check_syntax("x = 'é'\ny = é é\n", "python").startswith("line 2, column ")


@pytest.mark.parametrize(
    ("alias", "name"),
    [("py", "python"), ("Python3", "python"), ("js", "javascript"), ("ts", "typescript"),
     ("C++", "cpp"), ("sh", "bash"), ("yml", "yaml"), ("golang", "go"), (" Rust ", "rust")],
)  # fmt: skip
def test_aliases_are_normalised(alias, name):
    assert normalise_language(alias) == name
    assert check_syntax(CASES[name][0], alias) is None


def test_an_unknown_language_is_not_checked():
    with pytest.raises(NotChecked, match="no tree-sitter parser for language 'klingon'"):
        check_syntax("Qapla'", "klingon")


def test_empty_code_is_a_violation():
    assert check_syntax("  \n", "python") == "the output has no code (it is empty)"


def test_validate_reports_syntax_entries():
    good = validate("def f():\n    return 1\n", [], language="py")
    assert good.all_satisfied and good.satisfied == ["syntax:python"]
    bad = validate("def f(:\n", [], language="python")
    assert not bad.all_satisfied and bad.violated == ["syntax:python"]
    assert bad.errors["syntax:python"].startswith("line 1, column ")
    unknown = validate("x", [], language="klingon")
    assert not unknown.all_satisfied and unknown.satisfied == [] and unknown.violated == []
    assert unknown.not_checked == ["syntax:klingon"]
    assert "no tree-sitter parser" in unknown.errors["syntax:klingon"]


def test_validate_without_a_language_is_unchanged():
    result = validate("def f(:", [PyConstraintIR("any", regex_patterns=[".*"])])
    assert result.all_satisfied and result.satisfied == ["any"] and result.not_checked == []


def test_validate_checks_the_code_not_the_raw_text():
    text = "Here it is:\n```python\nx = 1\n```"
    result = validate(text, [], language="python", code="x = 1")
    assert result.satisfied == ["syntax:python"]


def test_the_syntax_language_of_a_request():
    def request(constraints=(), **context):
        return PyGenerationRequest("p", list(constraints), context=PyGenerationContext(**context))

    assert syntax_language(request(language="Py"), language_of(request(language="Py"))) == "py"
    inferred = request(current_file="src/app.ts")
    assert syntax_language(inferred, language_of(inferred)) == "typescript"
    plain = PyGenerationRequest("p")
    assert syntax_language(plain, language_of(plain)) is None
    # a JSON schema's output is JSON by construction: the schema check parses it already
    schema = request([PyConstraintIR("j", json_schema='{"type": "object"}')], language="python")
    assert syntax_language(schema, language_of(schema)) is None
