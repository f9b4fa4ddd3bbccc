"""A JSON Schema as a short TypeScript-like outline, for the model's prompt.

The decoder enforces the schema whatever the prompt says; the prompt only helps the model write
good values. A raw schema spends most of its tokens on noise a model cannot use (`$schema`,
`$id`, `description` paragraphs, `additionalProperties`), so it is rendered as an outline:

    {name: string; age?: integer >= 0; tags?: string[]; role: "admin" | "user"}

Required keys have no `?`; enums and consts are literals; formats, patterns, bounds and lengths
follow the type in a few words. Local `$ref`s to definitions become named types listed after the
root (`type Address = {…}`), so recursion ends. Anything the outline cannot say shortly is left
out: it is only a hint.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BOUNDS = (
    ("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"),
)  # fmt: skip


class _Outline:
    def __init__(self, root: dict) -> None:
        self.root = root
        self.named: dict[str, str] = {}  # $ref → rendered type, in the order they were met
        self.pending: list[tuple[str, Any]] = []

    def ref_name(self, ref: str) -> str:
        words = re.findall(r"[A-Za-z0-9]+", ref.replace("~1", "/").replace("~0", "~"))
        name = words[-1] if words else "Root"  # "#/$defs/io.k8s.api.core.v1.NodeAffinity" → NodeAffinity
        name = name[:1].upper() + name[1:]
        if ref not in self.named:
            taken = set(self.named.values())
            base, n = name, 2
            while name in taken:
                name, n = f"{base}{n}", n + 1
            self.named[ref] = name
            self.pending.append((ref, self.resolve(ref)))
        return self.named[ref]

    def resolve(self, ref: str) -> Any:
        if ref == "#":
            return self.root
        node: Any = self.root
        for part in ref.removeprefix("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return {}
            node = node[part]
        return node

    def type(self, schema: Any, depth: int = 0) -> str:
        if schema is True or schema == {}:
            return "any"
        if schema is False:
            return "never"
        if not isinstance(schema, dict) or depth > 12:
            return "any"
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            return self.ref_name(ref)
        if "const" in schema:
            return json.dumps(schema["const"])
        if isinstance(schema.get("enum"), list):
            return " | ".join(json.dumps(v) for v in schema["enum"][:12]) + (
                " | …" if len(schema["enum"]) > 12 else ""
            )
        for keyword, joiner in (("anyOf", " | "), ("oneOf", " | "), ("allOf", " & ")):
            if isinstance(schema.get(keyword), list) and schema[keyword]:
                parts = [self.type(s, depth + 1) for s in schema[keyword]]
                return "(" + joiner.join(parts) + ")" if len(parts) > 1 else parts[0]
        kinds = schema.get("type")
        if isinstance(kinds, list):
            return " | ".join(self.single(schema, k, depth) for k in kinds)
        if kinds is None:
            kinds = "object" if "properties" in schema else ("array" if "items" in schema else None)
        return self.single(schema, kinds, depth) if kinds else "any"

    def single(self, schema: dict, kind: str, depth: int) -> str:
        notes: list[str] = []
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, depth)
        if kind in ("integer", "number"):
            notes += [f"{op} {schema[k]}" for k, op in _BOUNDS if isinstance(schema.get(k), (int, float))]
            if isinstance(schema.get("multipleOf"), (int, float)):
                notes.append(f"multiple of {schema['multipleOf']}")
        if kind == "string":
            if isinstance(schema.get("format"), str):
                notes.append(schema["format"])
            if isinstance(schema.get("pattern"), str) and len(schema["pattern"]) <= 80:
                notes.append(f"/{schema['pattern']}/")
            lo, hi = schema.get("minLength"), schema.get("maxLength")
            if lo or hi is not None:
                notes.append(f"{lo or 0}..{'' if hi is None else hi} chars")
        return kind + (f" ({', '.join(notes)})" if notes else "")

    def object(self, schema: dict, depth: int) -> str:
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = set(schema.get("required") or []) if isinstance(schema.get("required"), list) else set()
        fields = [
            f"{_key(name)}{'' if name in required else '?'}: {self.type(sub, depth + 1)}"
            for name, sub in properties.items()
        ]
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) or (not properties and extra is not False):
            value = self.type(extra if isinstance(extra, dict) else True, depth + 1)
            fields.append(f"[key: string]: {value}")
        return "{" + "; ".join(fields) + "}"

    def array(self, schema: dict, depth: int) -> str:
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            return "[" + ", ".join(self.type(s, depth + 1) for s in prefix) + "]"
        item = self.type(schema.get("items", True), depth + 1)
        text = f"({item})[]" if " " in item and not item.startswith(("{", "(")) else f"{item}[]"
        lo, hi = schema.get("minItems"), schema.get("maxItems")
        if lo or hi is not None:
            text += f" ({lo or 0}..{'' if hi is None else hi} items)"
        return text


def _key(name: str) -> str:
    return name if name.isidentifier() else json.dumps(name)


def schema_outline(schema: Any) -> str:
    """The outline of a parsed JSON schema: the root, then each named type it references."""
    outline = _Outline(schema if isinstance(schema, dict) else {})
    lines = [outline.type(schema)]
    while outline.pending:
        ref, target = outline.pending.pop(0)
        lines.append(f"type {outline.named[ref]} = {outline.type(target)}")
    return "\n".join(lines)
