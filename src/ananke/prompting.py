"""Chat messages for a request, and code extraction from free-form answers."""

from __future__ import annotations

import json
import re
from pathlib import PurePath

from ananke.outline import schema_outline
from ananke.types import PyGenerationRequest

EXTENSIONS = {
    ".py": "python", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript",
    ".tsx": "typescript", ".go": "go", ".rs": "rust", ".java": "java", ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".sql": "sql", ".sh": "bash", ".bash": "bash",
    ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".rb": "ruby", ".kt": "kotlin",
}  # fmt: skip

MAX_SCHEMA_CHARS_IN_PROMPT = 4000

_FENCE = re.compile(r"```([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def language_of(request: PyGenerationRequest) -> str | None:
    """The context's language, else the one implied by `current_file`'s extension."""
    ctx = request.context
    if ctx is None:
        return None
    if ctx.language:
        return ctx.language.strip().lower()
    if ctx.current_file:
        return EXTENSIONS.get(PurePath(ctx.current_file).suffix.lower())
    return None


def build_messages(request: PyGenerationRequest, include_schema: bool = True) -> list[dict]:
    """A system message asking for code only (shaped by the context), then the user's prompt.

    File contents are never read; only the names in the context are used. JSON schemas and
    regexes are shown to the model (decoding enforces them anyway, but a model that knows the
    target fills in better values); `include_schema=False` leaves them out. A schema is shown as a
    TypeScript-like outline (ananke.outline: a fraction of its tokens); one longer than
    MAX_SCHEMA_CHARS_IN_PROMPT is cut there in the prompt only; decoding enforces all of it.
    """
    language = language_of(request)
    parts = ["You are a precise coding assistant."]
    if language:
        parts.append(f"Write {language} code.")
    ctx = request.context
    if ctx and ctx.current_file:
        parts.append(f"The code goes in the file {ctx.current_file}.")
    if request.constraints_ir:
        parts.append("Answer with the requested output only, no explanation.")
    else:
        parts.append("Answer with the code only, in one fenced code block.")
    if include_schema:
        for c in request.constraints_ir:
            if c.json_schema is not None:
                shape = json_shape(c.json_schema)
                if len(shape) > MAX_SCHEMA_CHARS_IN_PROMPT:  # keep the prompt within the context
                    shape = shape[:MAX_SCHEMA_CHARS_IN_PROMPT] + " …(truncated)"
                parts.append(f"The output is JSON of this shape (TypeScript, ? = optional): {shape}")
            for pattern in c.regex_patterns:
                parts.append(f"The output must match the regular expression {pattern}")
    return [
        {"role": "system", "content": " ".join(parts)},
        {"role": "user", "content": request.prompt},
    ]


def json_shape(schema_text: str) -> str:
    """The schema's TypeScript-like outline (ananke.outline); the text itself if it is not JSON."""
    try:
        schema = json.loads(schema_text)
    except (ValueError, RecursionError):
        return schema_text
    return schema_outline(schema)


def extract_code(text: str, language: str | None) -> str:
    """The fenced block in `language` if any, else the first fenced block, else the whole text."""
    blocks = _FENCE.findall(text)
    if language:
        for tag, body in blocks:
            if tag.lower() == language.lower():
                return body.strip("\n")
    if blocks:
        return blocks[0][1].strip("\n")
    return text.strip()
