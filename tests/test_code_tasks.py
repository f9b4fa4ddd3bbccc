"""The code benchmark's data and checks (no model): enough tasks, grammars that compile, checks
that pass a right answer and fail a wrong one."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from ananke import PyConstraintIR
from ananke.bench.code import check_error, grammar_of, request_of, syntax_error
from ananke.bench.code_tasks import TASKS
from ananke.constraints import compile_constraints
from ananke.grammars import matches

BY_ID = {t.id: t for t in TASKS}


def test_at_least_30_tasks_in_three_languages():
    counts = Counter(t.language for t in TASKS)
    assert len(TASKS) >= 30 and set(counts) == {"python", "javascript", "sql"}
    assert len(BY_ID) == len(TASKS)  # ids are unique


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_every_grammar_compiles_and_the_arms_differ(task):
    compile_constraints([PyConstraintIR("g", grammar=grammar_of(task))])
    assert request_of(task, "grammar").constraints_ir and not request_of(task, "unconstrained").constraints_ir
    assert request_of(task, "repair").max_attempts == 3


@pytest.mark.parametrize("task", [t for t in TASKS if t.language == "sql"], ids=lambda t: t.id)
def test_sql_reference_passes_and_is_in_the_grammar(task):
    assert check_error(task, task.reference) is None
    assert matches(grammar_of(task), task.reference)
    assert check_error(task, "SELECT id FROM users WHERE age < 0") is not None


def test_python_checks_pass_a_right_answer_and_fail_a_wrong_one():
    task = BY_ID["py_factorial"]
    right = "def factorial(n: int) -> int:\n    return 1 if n == 0 else n * factorial(n - 1)\n"
    assert matches(grammar_of(task), right)
    assert syntax_error(task, right) is None and check_error(task, right) is None
    assert "AssertionError" in check_error(task, "def factorial(n):\n    return n\n")
    assert "timed out" in check_error(task, "def factorial(n):\n    while True:\n        pass\n")
    assert syntax_error(task, "def factorial(n)\n    return n\n") is not None


def test_javascript_checks():
    task = BY_ID["js_sumArray"]
    right = (
        "function sumArray(arr) {\n  let total = 0;\n  for (const x of arr) {\n    total += x;\n  }\n"
        "  return total;\n}"
    )
    assert matches(grammar_of(task), right)
    assert syntax_error(task, right) is None and check_error(task, right) is None
    assert "no function sumArray" in check_error(task, "function total(arr) {\n  return 0;\n}")
    if shutil.which("node"):
        assert check_error(task, "function sumArray(arr) {\n  return 1;\n}") == "a case failed"
