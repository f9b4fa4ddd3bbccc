"""`ananke.grammars`: documented examples, near-misses, and soundness on random samples.

Soundness: every grammar is sampled at random with a real llguidance matcher
(tests/grammar_sampling.py) and each sample is checked by the language's own tool: `compile()`
for Python, sqlite for SQL, `json.loads`, tree-sitter + shlex for the shell. More samples:
ANANKE_GRAMMAR_SAMPLES=1000.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import tempfile
import warnings

import pytest

import ananke.grammars as grammars
from ananke import PyConstraintIR
from ananke.constraints import compile_constraints
from ananke.constraints.syntax import check_syntax
from ananke.grammars import matches
from tests.grammar_sampling import samples

SAMPLES = int(os.environ.get("ANANKE_GRAMMAR_SAMPLES", "80"))

ADD = grammars.python_function("add", ["a: int", "b: int"], "int")
TABLES = {"users": ["id", "name", "age"], "orders": ["id", "user_id", "total", "order"]}
SQL = grammars.sql_select(TABLES)
SHELL = grammars.shell_command(["ls", "grep", "wc"])
JS = grammars.javascript_function("sumArray", ["arr"])

EXAMPLES = [
    (ADD, "def add(a: int, b: int) -> int:\n    return a + b\n"),
    (ADD, 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n    return a + b\n'),
    (
        ADD,
        "def add(a: int, b: int) -> int:\n"
        "    # the sum\n"
        "    total = 0\n"
        "    for x in [a, b]:\n"
        "        if x < 0:\n"
        "            continue\n"
        "        total += x\n"
        "    while total > 100:\n"
        "        total -= 100\n"
        "        break\n"
        "    try:\n"
        "        check(total, strict=True)\n"
        "    except ValueError as err:\n"
        "        raise TypeError(str(err))\n"
        "    finally:\n"
        "        pass\n"
        "    return total\n",
    ),
    (grammars.python_function("f", []), "def f():\n    pass\n"),
    (grammars.python_expression(), "a[1:] + {'k': [x for x in y]}.get('k', None)"),
    (grammars.python_expression(), "not (a is not None and b not in c)"),
    (grammars.python_expression(), "sorted(s[::-1], key=lambda x: x[1]) + sum(1 for c in s if c in v)"),
    (ADD, "def add(a: int, b: int) -> int:\n    total: int = a\n    return total + b\n"),
    (
        JS,
        "function sumArray(arr) {\n"
        "  let total = 0;\n"
        "  for (let i = 0; i < arr.length; i++) {\n"
        "    if (arr[i] === null) {\n"
        "      continue;\n"
        "    } else if (!(arr[i] > 0)) {\n"
        "      break;\n"
        "    } else {\n"
        "      total += arr[i] * -1;\n"
        "    }\n"
        "  }\n"
        "  const seen = new Set([1, 'a']);\n"
        '  console.log({ a: seen.size, "b": total ? 1 : 0 });\n'
        "  return total;\n"
        "}",
    ),
    (SQL, "SELECT DISTINCT name FROM users WHERE age BETWEEN 18 AND 30 AND name LIKE 'A%'"),
    (SQL, 'SELECT "order", SUM(total) AS s FROM orders GROUP BY "order" ORDER BY "order" DESC LIMIT 5;'),
    (SQL, "SELECT users.name, orders.total FROM users JOIN orders ON users.id = orders.user_id"),
    (SHELL, "grep -rn 'TODO: fix' src/ananke | wc -l"),
    (grammars.json_value(), '[1, -2.5, "a\\"b\\u00e9", {"x": {}}, [], false]'),
    (grammars.identifier("snake_case"), "parse_http2_response"),
    (grammars.identifier("PascalCase"), "HttpServer2"),
    (grammars.identifier("UPPER_SNAKE"), "MAX_RETRIES"),
    (grammars.identifier("kebab-case"), "my-component"),
]

NEAR_MISSES = [
    (ADD, "def add(a: int, b: int) -> int:\n    return a + b"),  # no final newline
    (ADD, "def add(a: int, b: int) -> int:\n   return a + b\n"),  # 3 spaces
    (ADD, "def add(a: int, b: int) -> int:\n\treturn a + b\n"),  # tab
    (ADD, "def add(a: int, b: int) -> int:\n    if a:\n    return b\n"),  # empty block
    (ADD, "def add(a: int, b: int) -> int:\n    if a:\n            return b\n"),  # two levels in
    (ADD, "def add(a: int, b: int) -> int:\n    return a\n        return b\n"),  # unexpected indent
    (ADD, "def add(a: int, b: int) -> int:\n    break\n"),  # break outside a loop
    (
        ADD,
        "def add(a: int, b: int) -> int:\n    try:\n        pass\n    except:\n        pass\n"
        "    except E:\n        pass\n",
    ),  # a bare except must be last
    (ADD, "def add(a: int, b: int) -> int:\n    # only a comment\n"),
    (ADD, "def add(a, b):\n    return a + b\n"),  # another signature
    (ADD, "def add(a: int, b: int) -> int:\n    return a +\n"),
    (ADD, "def add(a: int, b: int) -> int:\n    class = 1\n"),  # keyword as a name
    (ADD, "def add(a: int, b: int) -> int:\n    return f(x=1, y)\n"),  # positional after keyword
    (ADD, "def add(a: int, b: int) -> int:\n    return '\\N'\n"),  # malformed escape
    (ADD, "def add(a: int, b: int) -> int:\n    return 1.real\n"),
    (grammars.python_expression(), "a +"),
    (grammars.python_expression(), "x = 1"),
    (grammars.python_expression(), "lambda x, y: 1"),
    (grammars.python_expression(), "f(a=1, b=2)"),  # two keywords could repeat a name
    (grammars.python_expression(), "a" + " + a" * 9),  # chains are capped at 8 operators
    (grammars.python_expression(), "01"),
    (JS, "function sumArray(arr) {\n  return arr.reduce((a, b) => a + b);\n}"),  # no arrows
    (JS, "function sumArray(arr) {\n  break;\n}"),
    (JS, "function sumArray(arr) {\n  return --arr;\n}"),
    (JS, "function sumArray(arr) {\n  const class = 1;\n}"),
    (JS, "function sumArray(arr) {\n  return 1.toString();\n}"),
    (SQL, "SELECT email FROM users"),
    (SQL, "SELECT name FROM customers"),
    (SQL, "select name from users"),
    (SQL, "SELECT name FROM users; DROP TABLE users"),
    (SQL, "SELECT order FROM orders"),  # a keyword column must be quoted
    (SHELL, "rm -rf /"),
    (SHELL, "ls; rm x"),
    (SHELL, "ls && rm x"),
    (SHELL, "ls $(rm x)"),
    (SHELL, "ls `rm x`"),
    (SHELL, "ls > out"),
    (SHELL, "ls *.py"),
    (grammars.json_value(), "{'a': 1}"),
    (grammars.json_value(), "[1, 2,]"),
    (grammars.json_value(), "NaN"),
    (grammars.json_value(), "01"),
    (grammars.identifier("snake_case"), "parseHttp"),
    (grammars.identifier("snake_case"), "double__underscore"),
    (grammars.identifier("camelCase"), "ParseHttp"),
    (grammars.identifier("PascalCase"), "HTTPServer"),
    (grammars.identifier("UPPER_SNAKE"), "Max_Retries"),
    (grammars.identifier("kebab-case"), "my_component"),
    (grammars.identifier("snake_case", max_length=5), "toolong"),
]


def test_docstring_examples_hold():
    result = doctest.testmod(grammars)
    assert result.attempted >= 20 and result.failed == 0


@pytest.mark.parametrize(("grammar", "text"), EXAMPLES, ids=[repr(t[:30]) for _, t in EXAMPLES])
def test_accepts_examples(grammar, text):
    assert matches(grammar, text)


@pytest.mark.parametrize(("grammar", "text"), NEAR_MISSES, ids=[repr(t[-30:]) for _, t in NEAR_MISSES])
def test_rejects_near_misses(grammar, text):
    assert not matches(grammar, text)


@pytest.mark.parametrize("grammar", sorted({g for g, _ in EXAMPLES}, key=len), ids=lambda g: g[:20])
def test_compiles_with_anankes_compiler(grammar):
    compiled = compile_constraints([PyConstraintIR("code", grammar=grammar)])
    assert compiled.enforced == ("code:grammar",)


@pytest.mark.parametrize(
    "call",
    [
        lambda: grammars.python_function("class", []),
        lambda: grammars.python_function("f", ["a b"]),
        lambda: grammars.python_function("f", "a, b"),
        lambda: grammars.python_function("f", [], "int)"),
        lambda: grammars.python_function("f", [], max_depth=0),
        lambda: grammars.sql_select({}),
        lambda: grammars.sql_select({"t": []}),
        lambda: grammars.shell_command([]),
        lambda: grammars.shell_command(["ls; rm"]),
        lambda: grammars.identifier("Title Case"),
        lambda: grammars.javascript_function("class", []),
        lambda: grammars.javascript_function("f", ["a", "a"]),
    ],
)
def test_bad_arguments_are_clear_errors(call):
    with pytest.raises(
        ValueError, match=r"^(python_function|javascript_function|sql_select|shell_command|identifier):"
    ):
        call()


# ---------------------------------------------------------------- soundness on random samples

BLOCK_HINTS = [
    "if x:\n", "for i, j in y:\n", "while x:\n", "try:\n", "with x as f:\n", "else:\n", "elif x:\n",
    "except:\n", "except E as e:\n", "finally:\n", "break\n", "continue\n", "return x\n", "pass\n",
    "x[1] = 1\n", "# note\n",
]  # fmt: skip
PY_HINTS = ["    " * depth + hint for depth in range(1, 5) for hint in BLOCK_HINTS]


def _compiles(source: str, mode: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # e.g. "'str' object is not callable"
        try:
            compile(source, "<sample>", mode)
        except SyntaxError as exc:
            return f"{exc.msg} at line {exc.lineno}"
    return None


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_python_function_samples_compile(depth):
    grammar = grammars.python_function("f", ["a", "b: list[int] = []"], "int | None", max_depth=depth)
    found = samples(grammar, SAMPLES, max_bytes=700, hints=PY_HINTS)
    assert len(found) >= SAMPLES // 5  # walks past 700 bytes are dropped
    failures = [(s, why) for s in found if (why := _compiles(s, "exec"))]
    assert failures == []
    deepest = max(max(len(line) - len(line.lstrip(" ")) for line in s.splitlines()) // 4 for s in found)
    assert deepest >= min(depth, 3)  # the walk reached deep levels (depth 4 is rarely hit)


def test_python_expression_samples_compile():
    found = samples(grammars.python_expression(), SAMPLES, max_bytes=400)
    assert len(found) >= SAMPLES // 3
    assert [(s, why) for s in found if (why := _compiles(s, "eval"))] == []


JS_HINTS = [
    "  " * depth + hint
    for depth in range(1, 4)
    for hint in ["if (x) {\n", "for (const x of y) {\n", "while (x) {\n", "break;\n", "let i = 0;\n"]
]


def test_javascript_function_samples_parse():
    """tree-sitter must parse every sample; where node is installed, `node --check` too, except
    for a name declared twice in one block (an early error no context-free grammar can rule out)."""
    found = samples(JS, SAMPLES, max_bytes=800, hints=JS_HINTS, hint_rate=0.3)
    assert len(found) >= SAMPLES // 5
    for source in found:
        assert check_syntax(source, "javascript") is None, source
    node = shutil.which("node")
    if node is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for index, source in enumerate(found):
            path = os.path.join(tmp, f"s{index}.js")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(source)
            checked = subprocess.run([node, "--check", path], capture_output=True, text=True, timeout=30)
            assert checked.returncode == 0 or "has already been declared" in checked.stderr, (
                source,
                checked.stderr,
            )


def test_sql_samples_run_on_sqlite():
    db = sqlite3.connect(":memory:")
    for table, columns in TABLES.items():
        db.execute(f"CREATE TABLE {table} ({', '.join(f'{c!r}' for c in columns)})")
    failures = []
    for query in samples(SQL, SAMPLES, max_bytes=400):
        try:
            db.execute(query).fetchall()
        except sqlite3.Error as exc:
            failures.append((query, str(exc)))
    assert failures == []


def test_shell_samples_parse_and_run_only_allowed_commands():
    for line in samples(SHELL, SAMPLES, max_bytes=300):
        assert check_syntax(line, "bash") is None, line
        words = shlex.split(line)
        commands = [words[0]] + [words[i + 1] for i, w in enumerate(words) if w == "|"]
        assert set(commands) <= {"ls", "grep", "wc"}, line
        unquoted = re.sub(r"'[^']*'", "", line)  # nothing is special inside single quotes
        assert not set(unquoted) & set("$`;&><*?#(){}\\\n"), line


def test_json_samples_load():
    found = samples(grammars.json_value(), SAMPLES, max_bytes=400)
    assert len(found) >= SAMPLES // 2
    for text in found:
        json.loads(text)


@pytest.mark.parametrize("convention", sorted(grammars.IDENTIFIER_CONVENTIONS))
def test_identifier_samples_follow_the_convention(convention):
    pattern = grammars.IDENTIFIER_CONVENTIONS[convention]
    for name in samples(grammars.identifier(convention, max_length=20), 40, max_bytes=40):
        assert re.fullmatch(pattern, name) and len(name) <= 20, name


# ---------------------------------------------------------------- indentation, exhaustively

NESTED = [
    "def f(a, b: list[int] = [], ) -> int | None:",  # replaced by the grammar's header below
    "    total = 0",
    "    for x in b:",
    "        if x > a:",
    "            while x:",
    "                x -= 1",
    "            continue",
    "        elif x:",
    "            pass",
    "        else:",
    "            break",
    "    try:",
    "        total += a",
    "    except ValueError:",
    "        raise",
    "    with open(a) as fh:",
    "        return fh",
]


def test_every_single_line_reindentation_is_rejected_or_compiles():
    """Move each line of a nested body by -8..+8 spaces: whatever the grammar still accepts,
    Python compiles (and the grammar accepts the original)."""
    grammar = grammars.python_function("f", ["a", "b: list[int] = []"], "int | None", max_depth=4)
    header = "def f(a, b: list[int] = []) -> int | None:"
    lines = [header, *NESTED[1:]]
    original = "\n".join(lines) + "\n"
    assert matches(grammar, original) and _compiles(original, "exec") is None
    accepted = 0
    for index in range(1, len(lines)):
        for delta in range(-8, 9):
            if delta == 0:
                continue
            indent = len(lines[index]) - len(lines[index].lstrip(" ")) + delta
            if indent < 0:
                continue
            moved = [*lines[:index], " " * indent + lines[index].lstrip(" "), *lines[index + 1 :]]
            source = "\n".join(moved) + "\n"
            if matches(grammar, source):
                accepted += 1
                assert _compiles(source, "exec") is None, source
    assert accepted > 0  # some moves stay valid (e.g. the last line of a block one level out)
