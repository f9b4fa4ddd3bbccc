"""JSON Schema rewrites before llguidance sees a schema: drafts, and relaxed mode.

llguidance implements the 2020-12 meaning of every keyword. A schema of an older draft is first
translated to the 2020-12 spelling of the same meaning (`items` arrays, `$ref` siblings,
draft-04's boolean `exclusiveMaximum`, `id`), so the grammar enforces what the schema's own draft
says — the same draft the validator checks with.

Relaxed mode (opt-in) then weakens, one named location at a time, the assertions llguidance cannot
enforce. Each relaxation only *removes* an assertion (or turns `oneOf` into `anyOf`), so every
instance valid under the original schema is still valid under the relaxed one; outputs are then
checked against the original by the validator. Nothing is relaxed silently: every change is
listed as `<json pointer>: <what was done>`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from ananke.errors import ConstraintCompileError

# ---------------------------------------------------------------- walking subschemas

# Keywords whose value is one subschema, a list of them, or a name → subschema map.
_ONE = ("additionalProperties", "additionalItems", "contains", "propertyNames", "not", "if", "then",
        "else", "unevaluatedItems", "unevaluatedProperties", "items")  # fmt: skip
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_MAP = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas", "dependencies")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def subschemas(schema: Any, pointer: str = "") -> Iterator[tuple[str, dict]]:
    """Every object subschema of `schema` with its JSON pointer, parents before children.

    Only real schema positions are visited: a property *named* "not" is a property, not the
    keyword, and `enum`/`const`/`default` data is never entered.
    """
    if not isinstance(schema, dict):
        return
    yield pointer, schema
    for key in _ONE:
        if isinstance(schema.get(key), dict):
            yield from subschemas(schema[key], f"{pointer}/{_escape(key)}")
    for key in _LIST:
        if isinstance(schema.get(key), list):
            for i, item in enumerate(schema[key]):
                yield from subschemas(item, f"{pointer}/{_escape(key)}/{i}")
    for key in _MAP:
        if isinstance(schema.get(key), dict):
            for name, item in schema[key].items():
                yield from subschemas(item, f"{pointer}/{_escape(key)}/{_escape(name)}")


def edit(schema: Any, change: Callable[[str, dict], None]) -> Any:
    """A deep copy of `schema` with `change(pointer, node)` applied to each subschema in place."""
    schema = json.loads(json.dumps(schema))  # parsed JSON: the round trip is ~5x faster than deepcopy
    visit(schema, change)
    return schema


def visit(schema: Any, change: Callable[[str, dict], None]) -> None:
    """`change(pointer, node)` applied in place to each subschema of `schema`."""
    for pointer, node in list(subschemas(schema)):
        change(pointer, node)


# ---------------------------------------------------------------- drafts

DRAFTS = {
    "json-schema.org/draft-04/schema": "draft-04",
    "json-schema.org/draft-06/schema": "draft-06",
    "json-schema.org/draft-07/schema": "draft-07",
    "json-schema.org/draft/2019-09/schema": "2019-09",
    "json-schema.org/draft/2020-12/schema": "2020-12",
}
_ORDER = ["draft-04", "draft-06", "draft-07", "2019-09", "2020-12"]


def draft_of(name: str, schema: Any) -> str:
    """The draft named by `$schema` (2020-12 when absent); an unknown `$schema` is an error."""
    uri = schema.get("$schema") if isinstance(schema, dict) else None
    if uri is None:
        return "2020-12"
    key = str(uri).split("://", 1)[-1].rstrip("#") if isinstance(uri, str) else ""
    if key not in DRAFTS:
        raise ConstraintCompileError(
            f"json_schema: unsupported $schema {uri!r}; supported drafts: draft-04, draft-06, "
            "draft-07, 2019-09, 2020-12 (or omit $schema for 2020-12)",
            name,
        )
    return DRAFTS[key]


def to_2020_12(schema: Any, draft: str) -> Any:
    """The 2020-12 spelling of an older draft's schema, with the same meaning."""
    if draft == "2020-12" or not isinstance(schema, dict):
        return schema
    older = _ORDER.index(draft)

    def change(pointer: str, node: dict) -> None:
        if older <= _ORDER.index("draft-07") and "$ref" in node:
            # Up to draft 7 a $ref replaces its whole object: siblings (even $id) are ignored.
            # Definitions stay, so JSON pointers into them still resolve.
            for key in list(node):
                if key not in ("$ref", "definitions", "$defs"):
                    del node[key]
            return
        if isinstance(node.get("items"), list):  # tuple form → prefixItems (+ additionalItems)
            node["prefixItems"] = node.pop("items")
            if "additionalItems" in node:
                node["items"] = node.pop("additionalItems")
        else:
            node.pop("additionalItems", None)  # ignored unless items is an array
        _split_id(node, "id" if draft == "draft-04" else "$id")
        if draft == "draft-04":
            for bound, exclusive in (("maximum", "exclusiveMaximum"), ("minimum", "exclusiveMinimum")):
                # draft-04: `"exclusiveMaximum": true` makes `maximum` exclusive
                if isinstance(node.get(exclusive), bool) and node.pop(exclusive) and bound in node:
                    node[exclusive] = node.pop(bound)

    return edit(schema, change)


def _split_id(node: dict, key: str) -> None:
    """An old-draft id "doc.json#name" is 2020-12's `$id` "doc.json" plus `$anchor` "name"."""
    value = node.get(key)
    if not isinstance(value, str) or (key == "id" and "$id" in node):
        return
    del node[key]
    document, _, fragment = value.partition("#")
    if document:
        node["$id"] = document
    if fragment and not fragment.startswith("/") and "$anchor" not in node:
        node["$anchor"] = fragment  # a "#/json/pointer" id names nothing new: dropped


# ---------------------------------------------------------------- relaxed mode

# Assertions llguidance refuses that can simply be left out (each only ever narrows the valid set).
DROPPABLE = frozenset(
    {"not", "uniqueItems", "contains", "minContains", "maxContains", "propertyNames", "dependencies",
     "dependentRequired", "dependentSchemas", "if", "then", "else", "unevaluatedProperties",
     "unevaluatedItems", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor",
     "minProperties", "maxProperties"}
)  # fmt: skip


def drop_keywords(schema: Any, keywords: set[str], relaxed: list[str]) -> Any:
    def change(pointer: str, node: dict) -> None:
        for key in sorted(keywords & node.keys()):
            del node[key]
            relaxed.append(f"{pointer}/{_escape(key)}: not enforced")

    return edit(schema, change)


def drop_optional_key_counts(schema: Any, relaxed: list[str]) -> Any:
    """min/maxProperties where `properties` has optional keys (llguidance supports only the rest)."""

    def change(pointer: str, node: dict) -> None:
        properties = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        required = node.get("required") if isinstance(node.get("required"), list) else []
        if set(properties) - set(required):
            for key in ("minProperties", "maxProperties"):
                if key in node:
                    del node[key]
                    relaxed.append(f"{pointer}/{key}: not enforced")

    return edit(schema, change)


def one_of_pointers(schema: Any) -> list[str]:
    return [p for p, node in subschemas(schema) if isinstance(node.get("oneOf"), list)]


def one_of_as_any_of(schema: Any, pointers: set[str]) -> Any:
    def change(pointer: str, node: dict) -> None:
        if pointer in pointers:
            node["anyOf"] = node.pop("oneOf")

    return edit(schema, change)


def drop_matching(schema: Any, key: str, matches: Callable[[Any], bool], why: str, relaxed: list[str]) -> Any:
    """Remove `key` wherever its value `matches`; records `<pointer>/<key>: <why>`."""

    def change(pointer: str, node: dict) -> None:
        if key in node and matches(node[key]):
            del node[key]
            relaxed.append(f"{pointer}/{_escape(key)}: {why}")

    return edit(schema, change)
