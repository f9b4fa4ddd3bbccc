"""Syntax checks of generated code with tree-sitter (`tree-sitter-language-pack`).

`check_syntax(code, language)` parses the code with the language's tree-sitter grammar and
returns None when it parses cleanly, else the first error as "line L, column C: …" (1-based,
columns in characters). A language without a parser raises `NotChecked`: it is reported as not
checked, never as satisfied.

The pack's 0.x wheels carry every grammar compiled in (no download at run time); its 1.x line
fetches parsers on first use, which is why pyproject pins `<1`.
"""

from __future__ import annotations

import functools
import threading


class NotChecked(Exception):
    """A check that could not run (not the same as passing or failing)."""


# The languages the issue names, always available; others the pack has are checked too.
CORE_LANGUAGES = (
    "python", "javascript", "typescript", "go", "rust", "java", "c", "cpp", "sql", "bash", "json", "yaml",
)  # fmt: skip

ALIASES = {
    "py": "python", "python3": "python", "py3": "python",
    "js": "javascript", "node": "javascript", "nodejs": "javascript", "jsx": "javascript",
    "mjs": "javascript", "ecmascript": "javascript",
    "ts": "typescript",
    "golang": "go",
    "rs": "rust",
    "h": "c",
    "c++": "cpp", "cxx": "cpp", "cc": "cpp", "hpp": "cpp",
    "sh": "bash", "shell": "bash", "zsh": "bash",
    "yml": "yaml",
    "sqlite": "sql", "postgres": "sql", "postgresql": "sql", "mysql": "sql", "tsql": "sql",
    "c#": "csharp", "cs": "csharp", "c_sharp": "csharp",
    "rb": "ruby", "kt": "kotlin",
}  # fmt: skip

SNIPPET_CHARS = 30


def normalise_language(language: str) -> str:
    """Lower-case, trimmed, aliases resolved: "Py" → "python", "C++" → "cpp", "yml" → "yaml"."""
    name = language.strip().lower()
    return ALIASES.get(name, name)


def syntax_check_name(language: str) -> str:
    """The validation entry of a language: `syntax:<normalised name>`."""
    return f"syntax:{normalise_language(language)}"


_local = threading.local()  # tree-sitter parsers are not thread-safe: one per thread


def _parser(language: str):
    parsers = _local.__dict__.setdefault("parsers", {})
    if language not in parsers:
        parsers[language] = _new_parser(language)
    return parsers[language]


@functools.cache
def has_parser(language: str) -> bool:
    try:
        _new_parser(language)
    except NotChecked:
        return False
    return True


def _new_parser(language: str):
    try:
        from tree_sitter_language_pack import get_parser
    except ImportError:  # pragma: no cover - a core dependency
        raise NotChecked("tree-sitter-language-pack is not installed") from None
    try:
        return get_parser(language)
    except (LookupError, ValueError, KeyError):
        raise NotChecked(f"no tree-sitter parser for language {language!r}") from None


def check_syntax(code: str, language: str) -> str | None:
    """None when `code` parses as `language`, else where and why it does not.

    Raises NotChecked for a language without a parser. Empty code is a violation: the caller
    asked for code.
    """
    name = normalise_language(language)
    parser = _parser(name)
    if not code.strip():
        return "the output has no code (it is empty)"
    data = code.encode()
    root = parser.parse(data).root_node
    if not root.has_error:
        return None
    node = _first_error(root)
    if node is None:  # has_error without a located node: report the whole text
        return "line 1, column 1: the code does not parse"
    row, byte_col = node.start_point
    line = data.split(b"\n")[row] if row < data.count(b"\n") + 1 else b""
    column = len(line[:byte_col].decode(errors="replace")) + 1
    where = f"line {row + 1}, column {column}"
    if node.is_missing:
        return f"{where}: missing {node.type!r}"
    text = data[node.start_byte : node.end_byte].decode(errors="replace")
    if len(text) > SNIPPET_CHARS:
        text = text[:SNIPPET_CHARS] + "…"
    return f"{where}: unexpected {text!r}" if text else f"{where}: syntax error"


def _first_error(root):
    """The first ERROR or MISSING node in document order (pre-order, leftmost)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            return node
        if node.has_error:
            stack.extend(reversed(node.children))
    return None
