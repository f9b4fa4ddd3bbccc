"""Ready-made Lark grammars (llguidance dialect) for code-shaped outputs.

Each function returns a grammar string for `PyConstraintIR(grammar=...)`:

>>> from ananke import PyConstraintIR
>>> constraint = PyConstraintIR("add", grammar=python_function("add", ["a: int", "b: int"], "int"))

The grammars are deliberately *sound* rather than complete: everything they admit is valid in
the target language (the tests sample them at random and check with `compile()`, sqlite, json,
tree-sitter), while some valid code (unusual spacing, rare syntax) is left out. Spacing is fixed
(one space around binary operators, `, ` between items), which also keeps a small model from
wandering into whitespace.

Python has no INDENT/DEDENT tokens in llguidance, so indentation is spelled out: the function
body is depth 1 (4 spaces), each compound statement opens the next depth, up to `max_depth`
(at the deepest level only simple statements), and every line starts with exactly its depth's
spaces. A block is therefore always indented one level deeper than its header, and a dedent can
only return to an enclosing level: exactly what Python's tokenizer accepts. `break`/`continue`
exist only in loop bodies (separate rule families) and a bare `except:` only as the last
handler, so `compile()` accepts the output too.

`matches(grammar, text)` tells whether a grammar accepts a text (a fresh llguidance matcher).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "IDENTIFIER_CONVENTIONS",
    "identifier",
    "javascript_function",
    "json_value",
    "matches",
    "python_expression",
    "python_function",
    "shell_command",
    "sql_select",
]


def matches(grammar: str, text: str) -> bool:
    """True when `grammar` (Lark or GBNF, as in PyConstraintIR) accepts all of `text`.

    >>> matches(identifier("snake_case"), "max_value")
    True
    """
    from ananke.constraints.validate import check_grammar  # the validator's own matcher

    return check_grammar(text, grammar) is None


def _lit(text: str) -> str:
    """A Lark string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _alt(options: Iterable[str]) -> str:
    return " | ".join(_lit(o) for o in options)


# ---------------------------------------------------------------- Python

# Keywords (and `__debug__`, which cannot be assigned) are not names.
_PY_RESERVED = sorted(set(keyword.kwlist) | {"__debug__"}, key=len, reverse=True)
_PY_NAME = r"/[a-zA-Z_][a-zA-Z0-9_]*/ & ~/(" + "|".join(_PY_RESERVED) + ")/"
# Escapes limited to ones that never fail (no \N, \x, \u: a malformed one is a SyntaxError);
# no control characters (a raw newline or CR would end the line).
# Operator chains and trailers are capped (a small model at temperature 0 can otherwise extend
# `a + a + a …` until it runs out of tokens).
_CHAIN = 8
_PY_STRING_BODY = r"(?:[^{q}\\\x00-\x1f\x7f]|\\[\\\"'nrt0])*"

_PY_EXPRESSION_RULES = rf"""
py_expr: py_disj | py_disj " if " py_disj " else " py_expr
    | "lambda: " py_expr | "lambda " PY_NAME ": " py_expr
py_disj: py_conj (" or " py_conj){{0,{_CHAIN}}}
py_conj: py_inv (" and " py_inv){{0,{_CHAIN}}}
py_inv: "not " py_inv | py_comparison
py_comparison: py_sum (py_comp_op py_sum){{0,{_CHAIN}}}
py_comp_op: " < " | " > " | " == " | " >= " | " <= " | " != " | " in " | " not in " | " is " | " is not "
py_sum: py_term ((" + " | " - ") py_term){{0,{_CHAIN}}}
py_term: py_factor ((" * " | " / " | " // " | " % ") py_factor){{0,{_CHAIN}}}
py_factor: "-" py_factor | "+" py_factor | "~" py_factor | py_power
py_power: py_primary (" ** " py_factor)?
py_primary: PY_NUMBER | py_atom py_trailer{{0,{_CHAIN}}}
py_trailer: "(" py_args? ")" | "(" py_expr py_comp_for ")" | "[" py_subscript "]" | "." PY_NAME
py_args: py_expr (", " py_expr)* (", " py_kwarg)? | py_kwarg
py_kwarg: PY_NAME "=" py_expr
py_subscript: py_expr | py_expr? ":" py_expr? | py_expr? ":" py_expr? ":" py_expr?
py_atom: PY_NAME | PY_STRING | "True" | "False" | "None"
    | "(" py_expr ")" | "()" | "(" py_expr ",)" | "(" py_expr (", " py_expr)+ ")"
    | "(" py_expr py_comp_for ")"
    | "[]" | "[" py_expr (", " py_expr)* "]" | "[" py_expr py_comp_for "]"
    | "{{}}" | "{{" py_pair (", " py_pair)* "}}" | "{{" py_pair py_comp_for "}}"
    | "{{" py_expr (", " py_expr)* "}}" | "{{" py_expr py_comp_for "}}"
py_pair: py_expr ": " py_expr
py_comp_for: (" for " py_names " in " py_disj (" if " py_disj)*)+
py_names: PY_NAME (", " PY_NAME)*
PY_NAME: {_PY_NAME}
PY_NUMBER: /(0|[1-9][0-9]*)(\.[0-9]+)?/
PY_STRING: /"{_PY_STRING_BODY.format(q='"')}"/ | /'{_PY_STRING_BODY.format(q="'")}'/
"""


def python_expression() -> str:
    """A single Python expression (no walrus, starred or f-string; fixed spacing).

    Covers names, numbers, strings, calls (at most one keyword argument: two could repeat a
    name, which Python rejects), subscripts and slices, attributes, operators, comparisons,
    conditional expressions, one-parameter lambdas, tuples, lists, dicts, sets and
    comprehensions. Chains of binary operators and trailers are capped at 8.

    >>> matches(python_expression(), "max(a, b) * 2 if a > 0 else -1")
    True
    >>> matches(python_expression(), "[x ** 2 for x in range(10) if x % 2 == 0]")
    True
    >>> matches(python_expression(), "a +")  # incomplete
    False
    """
    return "start: py_expr\n" + _PY_EXPRESSION_RULES


def _check_python_signature(name: str, params: Sequence[str], returns: str | None) -> None:
    import ast

    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"python_function: name must be a Python identifier, got {name!r}")
    if isinstance(params, str) or not all(isinstance(p, str) for p in params):
        raise ValueError(f"python_function: params must be a list of strings, got {params!r}")
    header = f"def {name}({', '.join(params)})" + (f" -> {returns}" if returns else "") + ": pass"
    try:
        ast.parse(header)
    except SyntaxError as exc:
        raise ValueError(
            f"python_function: the signature {header[:-6]!r} is not valid Python: {exc.msg}"
        ) from None


def python_function(
    name: str,
    params: Sequence[str] = (),
    returns: str | None = None,
    *,
    max_depth: int = 3,
    max_statements: int = 12,
    docstring: bool = True,
) -> str:
    """One Python function `def name(params) -> returns:` with an indentation-correct body.

    `params` are spelled as in Python (`["a: int", "b: int = 0"]`), `returns` is the return
    annotation (None: none). The header is fixed; the body holds up to `max_statements`
    statements per block and compound statements (if/elif/else, for, while, try/except, with)
    nested up to `max_depth` levels (the body itself is level 1). Simple statements: return,
    pass, assignment (also to attributes, subscripts and tuples), augmented assignment,
    expression, raise, assert, import, and break/continue inside loops. Comment lines are
    allowed; `docstring=True` allows a docstring as the body's first line.

    >>> g = python_function("add", ["a: int", "b: int"], "int")
    >>> matches(g, "def add(a: int, b: int) -> int:\\n    return a + b\\n")
    True
    >>> matches(g, "def add(a: int, b: int) -> int:\\n    if a > b:\\n        return a\\n    return b\\n")
    True
    >>> matches(g, "def add(a: int, b: int) -> int:\\n  return a + b\\n")  # 2 spaces
    False
    >>> matches(g, "def sub(a: int, b: int) -> int:\\n    return a - b\\n")  # another name
    False
    """
    _check_python_signature(name, params, returns)
    if not isinstance(max_depth, int) or not 1 <= max_depth <= 8:
        raise ValueError(f"python_function: max_depth must be an integer from 1 to 8, got {max_depth!r}")
    if not isinstance(max_statements, int) or not 1 <= max_statements <= 100:
        raise ValueError(
            f"python_function: max_statements must be an integer from 1 to 100, got {max_statements!r}"
        )
    header = f"def {name}({', '.join(params)})" + (f" -> {returns}" if returns else "") + ":\n"
    first = "(py_docstring_1)? " if docstring else ""
    rules = [
        f"start: {_lit(header)} {first}py_body_1_0",
        'py_docstring_1: "    " PY_DOCSTRING "\\n"',
        # A one-line triple-quoted docstring: any text without quotes, backslashes or controls.
        r'PY_DOCSTRING: /"""[^"\\\x00-\x1f\x7f]*"""/',
        r"PY_COMMENT: /#[^\x00-\x1f\x7f]*/",
        'py_simple: "pass" | "return" | "return " py_exprs | py_targets " = " py_exprs'
        ' | PY_NAME ": " py_expr (" = " py_expr)?'
        " | py_target py_aug_op py_expr | py_expr"
        ' | "raise" | "raise " py_expr | "assert " py_expr | "assert " py_expr ", " py_expr'
        ' | "import " py_dotted | "from " py_dotted " import " PY_NAME',
        'py_loop_simple: "break" | "continue"',
        'py_aug_op: " += " | " -= " | " *= " | " /= " | " //= " | " %= " | " **= "',
        'py_exprs: py_expr (", " py_expr)*',
        'py_targets: py_target (", " py_target)*',
        'py_target: PY_NAME ("." PY_NAME | "[" py_subscript "]")*',
        'py_dotted: PY_NAME ("." PY_NAME)*',
    ]
    for depth in range(1, max_depth + 1):
        ind = _lit("    " * depth)
        for loop in (0, 1):
            s = f"{depth}_{loop}"
            simple = "py_simple | py_loop_simple" if loop else "py_simple"
            rules.append(f"py_body_{s}: py_line_{s}{{1,{max_statements}}}")
            rules.append(f"py_line_{s}: ({ind} PY_COMMENT " + '"\\n")* ' + f"py_stmt_{s}")
            stmt = [f'{ind} ({simple}) "\\n"']
            if depth < max_depth:
                inner, inner_loop = f"{depth + 1}_{loop}", f"{depth + 1}_1"
                stmt += [
                    f'{ind} "if " py_expr ":\\n" py_body_{inner}'
                    f' ({ind} "elif " py_expr ":\\n" py_body_{inner})*'
                    f' ({ind} "else:\\n" py_body_{inner})?',
                    f'{ind} "for " py_targets " in " py_exprs ":\\n" py_body_{inner_loop}',
                    f'{ind} "while " py_expr ":\\n" py_body_{inner_loop}',
                    f'{ind} "try:\\n" py_body_{inner}'
                    f' (({ind} "except " py_expr (" as " PY_NAME)? ":\\n" py_body_{inner})+'
                    f' ({ind} "except:\\n" py_body_{inner})? | {ind} "except:\\n" py_body_{inner})'
                    f' ({ind} "finally:\\n" py_body_{inner})?',
                    f'{ind} "with " py_expr (" as " PY_NAME)? ":\\n" py_body_{inner}',
                ]
            rules.append(f"py_stmt_{s}: " + "\n    | ".join(stmt))
    return "\n".join(rules) + "\n" + _PY_EXPRESSION_RULES


# ---------------------------------------------------------------- JavaScript

_JS_RESERVED = """arguments await break case catch class const continue debugger default delete do else
enum eval export extends false finally for function if implements import in instanceof interface let
new null package private protected public return static super switch this throw true try typeof var
void while with yield""".split()  # noqa: SIM905
_JS_PLAIN_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_JS_NAME = r"/[a-zA-Z_$][a-zA-Z0-9_$]*/ & ~/(" + "|".join(sorted(_JS_RESERVED, key=len, reverse=True)) + ")/"

_JS_EXPRESSION_RULES = rf"""
js_expr: js_or | js_or " ? " js_expr " : " js_expr
js_or: js_and (" || " js_and){{0,{_CHAIN}}}
js_and: js_eq (" && " js_eq){{0,{_CHAIN}}}
js_eq: js_rel ((" === " | " !== " | " == " | " != ") js_rel){{0,{_CHAIN}}}
js_rel: js_add ((" < " | " > " | " <= " | " >= ") js_add){{0,{_CHAIN}}}
js_add: js_mul ((" + " | " - ") js_mul){{0,{_CHAIN}}}
js_mul: js_unary ((" * " | " / " | " % ") js_unary){{0,{_CHAIN}}}
js_unary: "!" js_unary | "-" js_not_minus | js_postfix
js_not_minus: "!" js_unary | js_postfix
js_postfix: JS_NUMBER | js_atom js_trailer{{0,{_CHAIN}}}
js_trailer: "(" js_args? ")" | "[" js_expr "]" | "." JS_NAME
js_args: js_expr (", " js_expr)*
js_atom: JS_NAME | JS_STRING | "true" | "false" | "null" | "this" | "(" js_expr ")"
    | "[]" | "[" js_expr (", " js_expr)* "]" | "{{}}" | "{{ " js_prop (", " js_prop)* " }}"
    | "new " JS_NAME "(" js_args? ")"
js_prop: (JS_NAME | JS_STRING) ": " js_expr
JS_NAME: {_JS_NAME}
JS_NUMBER: /(0|[1-9][0-9]*)(\.[0-9]+)?/
JS_STRING: /"([^"\\\x00-\x1f\x7f]|\\["\\nrt'])*"/ | /'([^'\\\x00-\x1f\x7f]|\\["\\nrt'])*'/
"""


def javascript_function(
    name: str, params: Sequence[str] = (), *, max_depth: int = 3, max_statements: int = 12
) -> str:
    """One JavaScript `function name(params) { ... }` with 2-space indentation and semicolons.

    Statements: `const`/`let` declarations, assignments (`=`, `+=`, `-=`, `*=`, `/=`), `x++`,
    calls, `return`, if/else if/else, `for (const x of ...)`, `for (let i = 0; ...; i++)`,
    `while`, and break/continue inside loops; blocks nest up to `max_depth`. Expressions:
    operators with fixed spacing, calls, members, indexing, ternaries, array and object
    literals, `new X(...)`; no arrow functions, template literals or regex literals.

    >>> g = javascript_function("add", ["a", "b"])
    >>> matches(g, "function add(a, b) {\\n  return a + b;\\n}")
    True
    >>> matches(g, "function add(a, b) {\\n  return a + b\\n}")  # no semicolon
    False
    """
    if not isinstance(name, str) or not _JS_PLAIN_NAME.fullmatch(name) or name in _JS_RESERVED:
        raise ValueError(f"javascript_function: name must be a JavaScript identifier, got {name!r}")
    if isinstance(params, str) or not all(
        isinstance(p, str) and _JS_PLAIN_NAME.fullmatch(p) and p not in _JS_RESERVED for p in params
    ):
        raise ValueError(f"javascript_function: params must be a list of identifiers, got {params!r}")
    if len(set(params)) != len(params):
        raise ValueError(f"javascript_function: duplicate parameter names in {params!r}")
    if not isinstance(max_depth, int) or not 1 <= max_depth <= 8:
        raise ValueError(f"javascript_function: max_depth must be an integer from 1 to 8, got {max_depth!r}")
    if not isinstance(max_statements, int) or not 1 <= max_statements <= 100:
        raise ValueError(
            f"javascript_function: max_statements must be an integer from 1 to 100, got {max_statements!r}"
        )
    header = f"function {name}({', '.join(params)}) {{\n"
    rules = [
        f'start: {_lit(header)} js_body_1_0 "}}"',
        'js_simple: "return" | "return " js_expr | ("const " | "let ") JS_NAME " = " js_expr'
        ' | js_target js_assign_op js_expr | JS_NAME ("++" | "--") | js_call',
        'js_loop_simple: "break" | "continue"',
        'js_assign_op: " = " | " += " | " -= " | " *= " | " /= "',
        'js_target: JS_NAME ("." JS_NAME | "[" js_expr "]")*',
        'js_call: JS_NAME js_trailer* "(" js_args? ")"',
    ]
    for depth in range(1, max_depth + 1):
        ind = _lit("  " * depth)
        for loop in (0, 1):
            s = f"{depth}_{loop}"
            simple = "js_simple | js_loop_simple" if loop else "js_simple"
            rules.append(f"js_body_{s}: js_stmt_{s}{{1,{max_statements}}}")
            stmt = [f'{ind} ({simple}) ";\\n"']
            if depth < max_depth:
                inner, inner_loop = f"{depth + 1}_{loop}", f"{depth + 1}_1"
                close = f'{ind} "}}"'
                stmt += [
                    f'{ind} "if (" js_expr ") {{\\n" js_body_{inner} {close}'
                    f' (" else if (" js_expr ") {{\\n" js_body_{inner} {close})*'
                    f' (" else {{\\n" js_body_{inner} {close})? "\\n"',
                    f'{ind} "for (const " JS_NAME " of " js_expr ") {{\\n"'
                    f' js_body_{inner_loop} {close} "\\n"',
                    f'{ind} "for (let " JS_NAME " = " js_expr "; " js_expr "; " JS_NAME ("++" | "--")'
                    f' ") {{\\n" js_body_{inner_loop} {close} "\\n"',
                    f'{ind} "while (" js_expr ") {{\\n" js_body_{inner_loop} {close} "\\n"',
                ]
            rules.append(f"js_stmt_{s}: " + "\n    | ".join(stmt))
    return "\n".join(rules) + "\n" + _JS_EXPRESSION_RULES


# ---------------------------------------------------------------- SQL

_SQL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# SQLite's keywords (sqlite.org/lang_keywords.html): quoted when used as names, never aliases.
_SQL_KEYWORDS = frozenset(
    """abort action add after all alter always analyze and as asc attach autoincrement before begin
    between by cascade case cast check collate column commit conflict constraint create cross
    current current_date current_time current_timestamp database default deferrable deferred delete
    desc detach distinct do drop each else end escape except exclude exclusive exists explain fail
    filter first following for foreign from full generated glob group groups having if ignore
    immediate in index indexed initially inner insert instead intersect into is isnull join key last
    left like limit match materialized natural no not nothing notnull null nulls of offset on or
    order others outer over partition plan pragma preceding primary query raise range recursive
    references regexp reindex release rename replace restrict returning right rollback row rows
    savepoint select set table temp temporary then ties to transaction trigger unbounded union
    unique update using vacuum values view virtual when where window with without""".split()  # noqa: SIM905
)


def _sql_ident(name: str) -> str:
    """A table or column name as written in SQL: bare when plain, else double-quoted."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"sql_select: table and column names must be non-empty strings, got {name!r}")
    if _SQL_NAME.match(name) and name.lower() not in _SQL_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def sql_select(tables: Mapping[str, Sequence[str]], *, joins: bool = True) -> str:
    """One SQL `SELECT` over the given tables and their columns (upper-case keywords).

    Columns, `*`, `COUNT(*)` and COUNT/SUM/AVG/MIN/MAX of a column, with `AS` aliases;
    `DISTINCT`; `WHERE` with comparisons, `IS [NOT] NULL`, `LIKE`, `IN (...)`, `BETWEEN`,
    AND/OR/NOT and parentheses; `GROUP BY`, `ORDER BY ... ASC|DESC`, `LIMIT n`, and an optional
    final `;`. With several tables and `joins=True`, also `FROM a JOIN b ON a.x = b.y` with
    qualified columns. Only the given names can appear.

    >>> g = sql_select({"users": ["id", "name", "age"]})
    >>> matches(g, "SELECT name FROM users WHERE age > 30 ORDER BY name;")
    True
    >>> matches(g, "SELECT COUNT(*) AS n FROM users")
    True
    >>> matches(g, "SELECT email FROM users")  # no such column
    False
    """
    if not isinstance(tables, Mapping) or not tables:
        raise ValueError("sql_select: tables must be a non-empty mapping of table name → column names")
    for table, columns in tables.items():
        if isinstance(columns, str) or not columns:
            raise ValueError(f"sql_select: table {table!r} needs a non-empty list of column names")
    rules = [
        'start: sql_select ( ";" )?',
        "sql_select: " + " | ".join(f"sql_q_{i}" for i in range(len(tables))),
    ]
    names = list(tables)
    for i, table in enumerate(names):
        columns = [_sql_ident(c) for c in tables[table]]
        rules += _sql_query_rules(f"sql_q_{i}", f"c{i}", _lit(_sql_ident(table)), _alt(columns))
    if joins and len(tables) > 1:
        pairs = [(a, b) for a in range(len(names)) for b in range(len(names)) if a != b]
        rules[1] += " | " + " | ".join(f"sql_j_{a}_{b}" for a, b in pairs)
        for a, b in pairs:
            ta, tb = _sql_ident(names[a]), _sql_ident(names[b])
            qualified = [f"{ta}.{_sql_ident(c)}" for c in tables[names[a]]]
            qualified += [f"{tb}.{_sql_ident(c)}" for c in tables[names[b]]]
            source = f'{_lit(ta)} " JOIN " {_lit(tb)} " ON " sql_col_j{a}_{b} " = " sql_col_j{a}_{b}'
            rules += _sql_query_rules(f"sql_j_{a}_{b}", f"j{a}_{b}", source, _alt(qualified))
    rules += [
        'sql_cmp: " = " | " != " | " <> " | " < " | " > " | " <= " | " >= "',
        'sql_agg: "COUNT" | "SUM" | "AVG" | "MIN" | "MAX"',
        "SQL_ALIAS: /[a-z_][a-z0-9_]*/ & ~/(" + "|".join(sorted(_SQL_KEYWORDS, key=len, reverse=True)) + ")/",
        r"SQL_NUMBER: /-?(0|[1-9][0-9]*)(\.[0-9]+)?/",
        r"SQL_STRING: /'([^'\x00-\x1f]|'')*'/",
        r"SQL_INT: /[1-9][0-9]{0,5}/",
    ]
    return "\n".join(rules) + "\n"


def _sql_query_rules(rule: str, k: str, source: str, columns: str) -> list[str]:
    """The rules of one SELECT form: `k` suffixes its helper rules, `source` is the FROM part."""
    col, val, cond, pred, item = (f"sql_{x}_{k}" for x in ("col", "val", "cond", "pred", "item"))
    return [
        f'{rule}: "SELECT " ("DISTINCT ")? ("*" | {item} (", " {item})*) " FROM " {source}'
        f' (" WHERE " {cond})? (" GROUP BY " {col} (", " {col})*)?'
        f' (" ORDER BY " {col} (" ASC" | " DESC")? (", " {col} (" ASC" | " DESC")?)*)?'
        ' (" LIMIT " SQL_INT)?',
        f"{col}: {columns}",
        f'{item}: ({col} | "COUNT(*)" | sql_agg "(" {col} ")") (" AS " SQL_ALIAS)?',
        f"{val}: {col} | SQL_NUMBER | SQL_STRING",
        f'{cond}: {pred} ((" AND " | " OR ") {pred})*',
        f'{pred}: {val} sql_cmp {val} | {col} " IS NULL" | {col} " IS NOT NULL"'
        f' | {col} " LIKE " SQL_STRING | {col} " IN (" {val} (", " {val})* ")"'
        f' | {col} " BETWEEN " {val} " AND " {val} | "NOT " {pred} | "(" {cond} ")"',
    ]


# ---------------------------------------------------------------- shell

_COMMAND_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\Z")


def shell_command(allowed: Sequence[str], *, pipes: bool = True, max_args: int = 16) -> str:
    """One shell command line whose commands all come from `allowed`.

    Arguments are plain words (letters, digits and `_ . / : = + % @ , -`) or single-quoted
    strings (no expansion happens inside them); no `$`, backquotes, globs, redirections, `;`,
    `&&` or comments. With `pipes=True` commands may be joined with ` | `.

    >>> g = shell_command(["ls", "grep", "wc"])
    >>> matches(g, "ls -la /tmp | grep 'my file' | wc -l")
    True
    >>> matches(g, "rm -rf /")  # not allowed
    False
    >>> matches(g, "ls; rm x")
    False
    """
    if isinstance(allowed, str) or not allowed:
        raise ValueError("shell_command: allowed must be a non-empty list of command names")
    for name in allowed:
        if not isinstance(name, str) or not _COMMAND_NAME.match(name):
            raise ValueError(f"shell_command: {name!r} is not a plain command name")
    if not isinstance(max_args, int) or not 0 <= max_args <= 100:
        raise ValueError(f"shell_command: max_args must be an integer from 0 to 100, got {max_args!r}")
    rules = [
        'start: sh_cmd (" | " sh_cmd)*' if pipes else "start: sh_cmd",
        f'sh_cmd: sh_name (" " sh_arg){{0,{max_args}}}',
        f"sh_name: {_alt(sorted(set(allowed)))}",
        "sh_arg: SH_WORD | SH_QUOTED",
        r"SH_WORD: /[A-Za-z0-9_.\/:=+%@,-]+/",
        r"SH_QUOTED: /'[^'\x00]*'/",
    ]
    return "\n".join(rules) + "\n"


# ---------------------------------------------------------------- JSON


def json_value() -> str:
    """Any JSON value, written compactly with `json.dumps`' separators (`, ` and `: `).

    >>> matches(json_value(), '{"name": "Ada", "tags": ["x", 1.5e3, null, true]}')
    True
    >>> matches(json_value(), "{'name': 'Ada'}")  # single quotes are not JSON
    False
    """
    return (
        "start: json_value\n"
        'json_value: json_object | json_array | JSON_STRING | JSON_NUMBER | "true" | "false" | "null"\n'
        'json_object: "{}" | "{" json_pair (", " json_pair)* "}"\n'
        'json_pair: JSON_STRING ": " json_value\n'
        'json_array: "[]" | "[" json_value (", " json_value)* "]"\n'
        r'JSON_STRING: /"([^"\\\x00-\x1f]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/' + "\n"
        r"JSON_NUMBER: /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/" + "\n"
    )


# ---------------------------------------------------------------- identifiers

IDENTIFIER_CONVENTIONS = {
    "snake_case": r"[a-z][a-z0-9]*(_[a-z0-9]+)*",
    "camelCase": r"[a-z][a-z0-9]*([A-Z][a-z0-9]+)*",
    "PascalCase": r"([A-Z][a-z0-9]+)+",
    "UPPER_SNAKE": r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*",
    "kebab-case": r"[a-z][a-z0-9]*(-[a-z0-9]+)*",
}


def identifier(convention: str = "snake_case", *, max_length: int = 64, reserved: Iterable[str] = ()) -> str:
    """One identifier in a naming convention (a key of IDENTIFIER_CONVENTIONS), ASCII only.

    PascalCase words are a capital plus at least one lower-case letter or digit (`HttpServer`,
    not `HTTPServer`). `reserved` words are excluded (e.g. `keyword.kwlist`).

    >>> matches(identifier("camelCase"), "parseHttpResponse")
    True
    >>> matches(identifier("camelCase"), "ParseHttpResponse")
    False
    >>> matches(identifier("snake_case", reserved=["class"]), "class")
    False
    """
    if convention not in IDENTIFIER_CONVENTIONS:
        raise ValueError(
            f"identifier: unknown convention {convention!r}; known: {list(IDENTIFIER_CONVENTIONS)}"
        )
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"identifier: max_length must be a positive integer, got {max_length!r}")
    lexeme = f"/{IDENTIFIER_CONVENTIONS[convention]}/ & /.{{1,{max_length}}}/"
    words = [w for w in reserved if isinstance(w, str) and w]
    if words:
        lexeme += " & ~/(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")/"
    return f"start: IDENT\nIDENT: {lexeme}\n"
