"""Code generation on the embedded model: the Python-function grammar gives code Python accepts,
and a failed syntax check is regenerated (the attempts loop) and reported with its location."""

from __future__ import annotations

import ast

import pytest

from ananke import Ananke, PyConstraintIR, PyGenerationContext, PyGenerationRequest, grammars

pytestmark = pytest.mark.model

PYTHON = PyGenerationContext(language="python")


@pytest.fixture(scope="module")
def client() -> Ananke:
    return Ananke("local", timeout_secs=600)  # correctness, not speed: the machine may be busy


async def test_python_function_grammar_gives_code_that_parses_and_defines_the_function(client):
    grammar = grammars.python_function("count_vowels", ["s: str"], "int")
    request = PyGenerationRequest(
        "Write a Python function count_vowels(s) that returns the number of vowels in s.",
        [PyConstraintIR("function", grammar=grammar)],
        max_tokens=160,
        temperature=0.0,
        context=PYTHON,
    )
    response = await client.generate(request)
    assert response.metadata.finish_reason == "stop", response.code
    tree = ast.parse(response.code)
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert [f.name for f in functions] == ["count_vowels"]
    assert [a.arg for a in functions[0].args.args] == ["s"]
    assert response.validation.all_satisfied
    assert response.validation.satisfied == ["function", "syntax:python"]


async def test_a_failed_syntax_check_is_retried_and_located(client):
    # The regex forces a Python-looking line with a missing colon: every attempt fails the check.
    broken = PyConstraintIR("shape", regex_patterns=[r"def f\(x\) return x"])
    request = PyGenerationRequest("Write f.", [broken], 16, 0.0, context=PYTHON, max_attempts=3)
    response = await client.generate(request)
    assert response.code == "def f(x) return x"
    assert response.metadata.attempts == 3
    assert response.validation.satisfied == ["shape"]
    assert response.validation.violated == ["syntax:python"]
    assert response.validation.errors["syntax:python"].startswith("line 1, column ")


async def test_the_syntax_language_comes_from_the_file_name(client):
    broken = PyConstraintIR("shape", regex_patterns=[r"SELEC a FROM t"])
    request = PyGenerationRequest(
        "q", [broken], 12, 0.0, context=PyGenerationContext(current_file="queries/report.sql")
    )
    response = await client.generate(request)
    assert response.validation.violated == ["syntax:sql"]
    assert response.metadata.attempts == 1  # no max_attempts: one attempt


async def test_valid_syntax_is_not_retried(client):
    fine = PyConstraintIR("shape", regex_patterns=[r"x = [0-9]"])
    response = await client.generate(
        PyGenerationRequest("Set x.", [fine], 8, 0.0, context=PYTHON, max_attempts=3)
    )
    assert response.metadata.attempts == 1
    assert response.validation.satisfied == ["shape", "syntax:python"]


async def test_an_unknown_language_is_not_checked_and_not_retried(client):
    request = PyGenerationRequest(
        "Say hi.", max_tokens=8, temperature=0.0, context=PyGenerationContext(language="klingon"),
        max_attempts=3,
    )  # fmt: skip
    response = await client.generate(request)
    assert response.validation.not_checked == ["syntax:klingon"]
    assert not response.validation.all_satisfied  # never counted as satisfied
    assert response.metadata.attempts == 1  # a new output would not make it checkable
