"""Tool (function) calling: OpenAI `tools` declarations → one Ananke constraint, and back.

A call is decoded as the JSON object `{"name": <one of the declared names>, "arguments": {…}}`
whose `arguments` satisfy the function's `parameters` schema; with `parallel_tool_calls: true`
the model writes a JSON array of such calls (at least one). The constraint is an ordinary JSON
schema, so strict / relaxed mode and closed objects apply to the arguments as to any schema.

* `required`: one of the declared functions is called (enforced per token).
* a named function: that function is called (enforced per token).
* `auto`: a Lark grammar lets the model write either plain text (not starting with `{` or `[`)
  or a call, and a call it starts is enforced like `required`.
* `none`: no constraint; the tools are not shown to the model.

Fallback prompt (the GGUF chat templates served here have no tool format): the declarations are
listed in the prompt with the JSON shape of a call, and earlier assistant calls and `role: "tool"`
results are written as text turns (`assistant called …`, `tool result (id): …`).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ananke.types import PyConstraintIR


def function_of(tool: dict) -> dict:
    """The `function` part of an OpenAI tool (`{"type": "function", "function": {...}}`) or a bare one."""
    function = tool.get("function", tool) if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise ValueError(
            "each tool must be {'type': 'function', 'function': {'name': ..., 'parameters': {...}}}"
        )
    if tool.get("type", "function") != "function":
        raise ValueError(f"tool type {tool.get('type')!r} is not supported; only 'function'")
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict):
        raise ValueError(f"tool {function['name']!r}: parameters must be a JSON Schema object")
    return {**function, "parameters": parameters}


def call_schema(functions: list[dict], parallel: bool = False) -> dict:
    """JSON schema of one call to any of `functions` (or, parallel, a non-empty array of calls)."""
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": f["name"]}, "arguments": f["parameters"]},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in functions
    ]
    one = calls[0] if len(calls) == 1 else {"anyOf": calls}
    return {"type": "array", "items": one, "minItems": 1} if parallel else one


def tool_constraint(
    tools: list[dict] | dict, name: str | None = None, parallel: bool = False
) -> PyConstraintIR:
    """The constraint of a call to one of `tools` (OpenAI tool declarations or bare functions),
    or to the function `name` only. The output parses with `parse_calls`."""
    functions = [function_of(t) for t in (tools if isinstance(tools, list) else [tools])]
    if not functions:
        raise ValueError("tools must declare at least one function")
    if name is not None:
        functions = [f for f in functions if f["name"] == name]
        if not functions:
            raise ValueError(f"tool_choice names {name!r}, which is not among the declared tools")
    return PyConstraintIR(
        f"tool_call:{name or 'any'}", json_schema=json.dumps(call_schema(functions, parallel))
    )


def auto_grammar(functions: list[dict], parallel: bool = False) -> str:
    """Lark grammar: plain text, or a call enforced by its schema (llguidance's %json)."""
    schema = json.dumps(call_schema(functions, parallel))
    return f"start: TEXT | call\ncall: %json {schema}\nTEXT: /[^{{\\[\\s][\\s\\S]*/\n"


def parse_calls(text: str) -> list[dict] | None:
    """OpenAI `tool_calls` from a decoded call (or array of calls); None if `text` is not one."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
        return None
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": i["name"], "arguments": json.dumps(i.get("arguments", {}))},
        }
        for i in items
    ]


def tools_prompt(functions: list[dict], parallel: bool = False) -> str:
    lines = ["You can call these functions:"]
    for f in functions:
        lines.append(f"- {f['name']}: {f.get('description', '')} parameters: {json.dumps(f['parameters'])}")
    shape = '{"name": <function name>, "arguments": {<parameters>}}'
    lines.append(
        f"To call a function, answer with only the JSON {'array of ' if parallel else ''}{shape}"
        f"{' objects' if parallel else ''}; otherwise answer in plain text."
    )
    return "\n".join(lines)


def render_message(message: Any) -> str:
    """One chat turn as text for the fallback prompt (tool calls and tool results included)."""
    role, content = message.role, message.content or ""
    if role == "tool":
        return f"tool result ({message.tool_call_id or ''}): {content}"
    if role == "assistant" and message.tool_calls:
        calls = [
            f"{c['function']['name']}({c['function'].get('arguments', '')})"
            for c in message.tool_calls
            if isinstance(c, dict) and isinstance(c.get("function"), dict)
        ]
        return f"assistant called {', '.join(calls)}" + (f"\nassistant: {content}" if content else "")
    return f"{role}: {content}"
