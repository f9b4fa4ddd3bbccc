"""JSON Schema rewrites before llguidance sees a schema: drafts, and relaxed mode.

llguidance implements the 2020-12 meaning of every keyword. A schema of an older draft is first
translated to the 2020-12 spelling of the same meaning (`items` arrays, `$ref` siblings,
draft-04's boolean `exclusiveMaximum`, `id`), so the grammar enforces what the schema's own draft
says — the same draft the validator checks with. `unevaluated*` with nothing else evaluating
beside it becomes the `additional*` it means (plain_unevaluated).

Relaxed mode (opt-in) then weakens, one named location at a time, the assertions llguidance cannot
enforce. Each relaxation only *removes* an assertion (or turns `oneOf` into `anyOf`), so every
instance valid under the original schema is still valid under the relaxed one; outputs are then
checked against the original by the validator. Nothing is relaxed silently: every change is
listed as `<json pointer>: <what was done>`.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from ananke.errors import ConstraintCompileError

# ---------------------------------------------------------------- walking subschemas

# Keywords whose value is one subschema, a list of them, or a name → subschema map.
_ONE = ("additionalProperties", "additionalItems", "contains", "propertyNames", "not", "if", "then",
        "else", "unevaluatedItems", "unevaluatedProperties", "items")  # fmt: skip
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_MAP = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas", "dependencies")


_SUBSCHEMA_KEYS = frozenset(_ONE + _LIST + _MAP)


def _escape(key: str) -> str:
    if "~" not in key and "/" not in key:  # nearly every key: no new string to build
        return key
    return key.replace("~", "~0").replace("/", "~1")


def subschemas(schema: Any, pointer: str = "") -> list[tuple[str, dict]]:
    """Every object subschema of `schema` with its JSON pointer, parents before children.

    Only real schema positions are visited: a property *named* "not" is a property, not the
    keyword, and `enum`/`const`/`default` data is never entered.
    """
    found: list[tuple[str, dict]] = []

    def walk(node: dict, pointer: str) -> None:
        found.append((pointer, node))
        if not _SUBSCHEMA_KEYS.isdisjoint(node):
            for _, child_pointer, child in _children(node, pointer):
                walk(child, child_pointer)

    if isinstance(schema, dict):
        walk(schema, pointer)
    return found


def has_nested_ids(schema: Any) -> bool:
    """Whether a subschema below the root has its own `$id` (a "#/…" inside it then names a
    place in that resource, not in the document)."""
    return any("$id" in node for pointer, node in subschemas(schema) if pointer)


def each_subschema(schema: Any, change: Callable[[dict], None]) -> None:
    """`change(node)` in place on each object subschema, a parent before its children (which are
    found after the change); no pointers are built: the path every compile takes."""
    if not isinstance(schema, dict):
        return
    change(schema)
    if _SUBSCHEMA_KEYS.isdisjoint(schema):
        return
    for key in _ONE:
        child = schema.get(key)
        if child.__class__ is dict:
            each_subschema(child, change)
    for key in _LIST:
        children = schema.get(key)
        if children.__class__ is list:
            for child in children:
                each_subschema(child, change)
    for key in _MAP:
        children = schema.get(key)
        if children.__class__ is dict:
            for child in children.values():
                each_subschema(child, change)


def edit(schema: Any, change: Callable[[str, dict], None]) -> Any:
    """A deep copy of `schema` with `change(pointer, node)` applied to each subschema in place."""
    schema = json.loads(json.dumps(schema))  # parsed JSON: the round trip is ~5x faster than deepcopy
    visit(schema, change)
    return schema


def visit(schema: Any, change: Callable[[str, dict], None]) -> None:
    """`change(pointer, node)` applied in place to each subschema of `schema`."""
    for pointer, node in subschemas(schema):
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
    """The 2020-12 spelling of an older draft's schema, with the same meaning (a copy)."""
    translate = translator(draft)
    if translate is None or not isinstance(schema, dict):
        return schema
    schema = json.loads(json.dumps(schema))
    each_subschema(schema, translate)
    return schema


def translator(draft: str) -> Callable[[dict], None] | None:
    """What rewrites one subschema of `draft` into its 2020-12 spelling in place (None: 2020-12).
    Apply it with `each_subschema`: a `$ref` that drops its siblings drops them before they are
    walked."""
    if draft == "2020-12":
        return None
    older = _ORDER.index(draft)
    id_key = "id" if draft == "draft-04" else "$id"
    root_document: list[str] = []  # the document the root names: the first node changed is the root

    def change(node: dict) -> None:
        root = not root_document
        if root:
            value = node.get(id_key)
            root_document.append(value.partition("#")[0] if isinstance(value, str) else "")
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
        _split_id(node, id_key, None if root else root_document[0])
        if draft == "draft-04":
            for bound, exclusive in (("maximum", "exclusiveMaximum"), ("minimum", "exclusiveMinimum")):
                # draft-04: `"exclusiveMaximum": true` makes `maximum` exclusive
                if isinstance(node.get(exclusive), bool) and node.pop(exclusive) and bound in node:
                    node[exclusive] = node.pop(bound)

    return change


def _split_id(node: dict, key: str, root_document: str | None) -> None:
    """An old-draft id "doc.json#name" is 2020-12's `$id` "doc.json" plus `$anchor` "name" — but
    a subschema's "doc.json#name" where doc.json is the root's own document only names a place in
    it: `$anchor` alone (a `$id` there would make the subschema the whole document, so that the
    root, resolved by its URI, became that subschema)."""
    value = node.get(key)
    if not isinstance(value, str) or (key == "id" and "$id" in node):
        return
    del node[key]
    document, _, fragment = value.partition("#")
    if document and (root_document is None or urljoin(root_document, document) != root_document):
        node["$id"] = document
    if fragment and not fragment.startswith("/") and "$anchor" not in node:
        node["$anchor"] = fragment  # a "#/json/pointer" id names nothing new: dropped


# Subschemas applied to the same instance whose evaluated keys (items) `unevaluated*` also sees.
_EVALUATES_IN_PLACE = frozenset(
    {"allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "dependencies",
     "$ref", "$dynamicRef", "$recursiveRef"}
)  # fmt: skip


def plain_unevaluated(node: dict) -> None:
    """2019-09/2020-12 `unevaluatedProperties` (`unevaluatedItems`) where nothing is applied in
    place beside it, in place: there "unevaluated" means "not matched by `properties` or
    `patternProperties`" ("past `prefixItems`"), which is what `additionalProperties` (`items`)
    says — and llguidance enforces that. Beside an `additionalProperties` (`items`), which
    evaluates every key (item), it is a no-op. Items are left alone beside `contains`, whose
    matches count as evaluated."""
    if not _EVALUATES_IN_PLACE.isdisjoint(node):
        return
    if "unevaluatedProperties" in node:
        node.setdefault("additionalProperties", node.pop("unevaluatedProperties"))
    if "unevaluatedItems" in node and "contains" not in node:
        node.setdefault("items", node.pop("unevaluatedItems"))


# Every keyword of drafts 4 to 2020-12; any other key of a schema is an annotation.
_KEYWORDS = frozenset(
    {"$schema", "$id", "id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef",
     "$recursiveAnchor", "$vocabulary", "$comment", "$defs", "definitions", "type", "enum", "const",
     "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
     "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
     "maxProperties", "minProperties", "required", "dependentRequired", "dependencies", "allOf",
     "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "prefixItems", "items",
     "additionalItems", "contains", "properties", "patternProperties", "additionalProperties",
     "propertyNames", "unevaluatedItems", "unevaluatedProperties", "format", "contentEncoding",
     "contentMediaType", "contentSchema", "title", "description", "default", "deprecated",
     "readOnly", "writeOnly", "examples"}
)  # fmt: skip
# Keys that say nothing about an instance (a `not` of only these rejects everything).
_NOTES = frozenset({"title", "description", "default", "examples", "$comment", "deprecated"})
# JSON types as disjoint kinds: "number" is an integer or a fraction.
_KINDS = frozenset({"null", "boolean", "object", "array", "string", "integer", "fraction"})
# A `not` enum longer than this (in all, or one value) stays as written: its pattern grows with it.
NOT_ENUM_MAX_CHARS, NOT_ENUM_MAX_VALUE = 1024, 128


def plain_not(node: dict) -> None:
    """`not` in the forms that have a plain positive meaning, in place (llguidance has no `not`):

    - `not: {}` or `true`: nothing is valid here (`allOf: [false]`); `not: false`: no assertion;
    - `not: {"type": T}`: the other types (kept as written for a lone "integer": non-integral
      numbers have no type of their own);
    - `not: {"required": [k, …]}`: an object without k, or without one of them (`properties:
      {k: false}`); `required` holds for every non-object, so the negation admits objects only;
    - `not: {bound, …}` (and `type`) where the bounds (minimum, maxLength, minItems, …) bound one
      kind of value: another type, or that kind breaking one of the bounds;
    - `not: {"enum"/"const": strings}`: a `pattern` matching every other string (only strings
      are listed, so every other value passes the `not` and is no string: a pattern leaves it be);
    - `not: {"properties": {k: S, …}, "required": […]}` (and `type`) where each `not: S` is one of
      these: another type, or an object that lacks a required key or has a k whose value is not S.
    Any other `not` stays (strict mode refuses it, relaxed mode drops it). Exact: the same
    instances are valid before and after, save strings that would leave the listed ones by a
    control character, a quote or a backslash, which the pattern does not offer (see
    _other_strings)."""
    inner = node["not"]
    if inner is False:
        del node["not"]
        return
    if not isinstance(inner, dict) and inner is not True:
        return
    keys = set() if inner is True else inner.keys() - _NOTES
    node_kinds = _kinds(node.get("type")) if "type" in node else set(_KINDS)
    if node_kinds is None:
        return
    if not keys:  # rejects everything
        _and(node, False)
    elif keys == {"type"}:
        negated = _kinds(inner["type"])
        if negated is None:
            return
        kinds = node_kinds - negated
        if kinds and _type_of(kinds) is None:
            return  # fractions only: no `type` says that
        _set_kinds(node, kinds)
    elif keys == {"required"} and isinstance(inner["required"], list):
        names = inner["required"]
        if not all(isinstance(k, str) for k in names) or not isinstance(node.get("properties", {}), dict):
            return
        _set_kinds(node, node_kinds & {"object"})
        if len(set(names)) == 1:
            node["properties"] = {**node.get("properties", {}), names[0]: False}
        elif names:
            _and(node, {"anyOf": [{"properties": {k: False}} for k in dict.fromkeys(names)]})
        else:  # `required: []` holds for every instance
            _and(node, False)
    elif keys - {"type"} and keys - {"type"} <= _BOUNDS.keys():
        if not _negate_bounds(node, inner, keys - {"type"}, node_kinds):
            return
    elif keys in ({"enum"}, {"const"}, {"enum", "type"}, {"const", "type"}):
        values = [inner["const"]] if "const" in inner else inner["enum"]
        if not values or not isinstance(values, list):
            return
        if not all(isinstance(v, str) for v in values):  # other scalars: per kind what they leave
            if "type" in inner or not _negate_values(node, values, node_kinds):
                return
        elif ("type" in inner and inner["type"] != "string") or (
            sum(map(len, values)) > NOT_ENUM_MAX_CHARS or max(map(len, values)) > NOT_ENUM_MAX_VALUE
        ):
            return
        elif "string" in node_kinds:
            pattern = _other_strings(values)
            if "pattern" in node:
                _and(node, {"pattern": pattern})
            else:
                node["pattern"] = pattern
    elif "properties" in keys and keys <= {"properties", "required", "type"}:
        # not (an object of these types whose present k are S_k and required keys present): a
        # value of another type, or an object that lacks a required key or has a k not S_k
        kinds = _kinds(inner["type"]) if "type" in inner else set(_KINDS)
        alternatives = _object_negation(inner) if kinds is not None and "object" in kinds else []
        if kinds is None or alternatives is None:
            return
        others = node_kinds - kinds  # every value of these types passes the `not`
        if others and _type_of(others) is None:
            return
        if "object" not in node_kinds:
            alternatives = []
        if not others:  # objects only
            _set_kinds(node, node_kinds & {"object"})
        elif alternatives:
            _set_kinds(others_schema := {}, others)
            alternatives = [others_schema, *({"type": "object", **a} for a in alternatives)]
        else:
            _set_kinds(node, others)
        if alternatives or not others:  # none and no other type: nothing passes
            _and_any_of(node, alternatives)
    else:
        return
    del node["not"]


# A bound on one kind of value -> (the kinds it bounds, the bound that holds where it fails).
_BOUNDS: dict[str, tuple[frozenset[str], Callable[[Any], dict | None]]] = {
    "minimum": (frozenset({"integer", "fraction"}), lambda v: {"exclusiveMaximum": v}),
    "maximum": (frozenset({"integer", "fraction"}), lambda v: {"exclusiveMinimum": v}),
    "exclusiveMinimum": (frozenset({"integer", "fraction"}), lambda v: {"maximum": v}),
    "exclusiveMaximum": (frozenset({"integer", "fraction"}), lambda v: {"minimum": v}),
    "minLength": (frozenset({"string"}), lambda n: {"maxLength": n - 1} if n >= 1 else None),
    "maxLength": (frozenset({"string"}), lambda n: {"minLength": n + 1}),
    "minItems": (frozenset({"array"}), lambda n: {"maxItems": n - 1} if n >= 1 else None),
    "maxItems": (frozenset({"array"}), lambda n: {"minItems": n + 1}),
}


def _negate_bounds(node: dict, inner: dict, bounds: set[str], node_kinds: set[str]) -> bool:
    """`not: {bound, …}` (and `type`), where the bounds all bound one kind of value, as what it
    means, added to `node`: a value of another type, or of the bounded kind that breaks a bound.
    False (nothing added) when it has no such spelling."""
    kinds = _kinds(inner["type"]) if "type" in inner else set(_KINDS)
    bounded = {_BOUNDS[b][0] for b in bounds}
    if kinds is None or len(bounded) != 1:
        return False
    values = [inner[b] for b in bounds]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return False
    counts = {b for b in bounds if b.endswith(("Length", "Items"))}  # whole numbers
    if any(not float(inner[b]).is_integer() for b in counts):
        return False
    others = node_kinds - kinds  # pass `not` whatever their value
    within = node_kinds & kinds & next(iter(bounded))  # pass where they break a bound
    alternatives: list[dict] = []
    if others:
        if _type_of(others) is None:
            return False
        alternatives.append({})
        _set_kinds(alternatives[0], others)
    if within:
        for bound in sorted(bounds):
            broken = _BOUNDS[bound][1](int(inner[bound]) if bound in counts else inner[bound])
            if broken is not None:
                alternatives.append({**broken})
                _set_kinds(alternatives[-1], within)
    _and_any_of(node, alternatives)
    return True


NOT_ENUM_MAX_NUMBERS = 16  # each number splits the number line once more


def _negate_values(node: dict, values: list, node_kinds: set[str]) -> bool:
    """`not: {enum: values}` of scalars of several kinds, added to `node`: null unless listed,
    the boolean not listed, every other string (_other_strings), the numbers below, between and
    above the listed ones, and any array or object. False (nothing added) for an array or object
    value, too many numbers or too long strings."""
    if any(isinstance(v, (dict, list)) for v in values):
        return False
    strings = [v for v in values if isinstance(v, str)]
    booleans = [v for v in values if isinstance(v, bool)]
    numbers = sorted({v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if len(numbers) > NOT_ENUM_MAX_NUMBERS:
        return False
    if strings and (
        sum(map(len, strings)) > NOT_ENUM_MAX_CHARS or max(map(len, strings)) > NOT_ENUM_MAX_VALUE
    ):
        return False
    alternatives: list[dict] = []
    if "null" in node_kinds and None not in values:
        alternatives.append({"type": "null"})
    left = [b for b in (True, False) if b not in booleans]
    if "boolean" in node_kinds and left:
        alternatives.append({"type": "boolean", **({"enum": left} if len(left) == 1 else {})})
    if "string" in node_kinds:
        alternatives.append({"type": "string", **({"pattern": _other_strings(strings)} if strings else {})})
    if structured := sorted(node_kinds & {"array", "object"}):
        alternatives.append({"type": structured})
    if number_kinds := node_kinds & {"integer", "fraction"}:
        kind = _type_of(number_kinds)
        if kind is None:
            return False
        between = [{"exclusiveMinimum": a, "exclusiveMaximum": b} for a, b in itertools.pairwise(numbers)]
        bounds = [{}]  # any number, when none is listed
        if numbers:
            bounds = [{"exclusiveMaximum": numbers[0]}, *between, {"exclusiveMinimum": numbers[-1]}]
        alternatives += [{"type": kind[0], **bound} for bound in bounds]
    _and_any_of(node, alternatives)
    return True


def _object_negation(inner: dict) -> list[dict] | None:
    """Alternatives, among objects, to `inner`'s `properties` and `required` (an object lacking a
    required key, or with a k whose value is not S_k); None where some `not: S_k` has no positive
    spelling."""
    properties, names = inner.get("properties", {}), inner.get("required", [])
    if not isinstance(properties, dict) or not isinstance(names, list):
        return None
    if not all(isinstance(k, str) for k in names):
        return None
    alternatives = []
    for name, schema in properties.items():
        negated = {"not": schema}
        plain_not(negated)
        if "not" in negated:
            return None
        if negated != {"allOf": [False]}:  # S_k is `true`: no value is not S_k
            present = {} if name in names else {"required": [name]}  # else absent passes too
            alternatives.append({"properties": {name: negated}, **present})
        elif name in names:
            alternatives.append({"properties": {name: False}})
    alternatives += [{"properties": {k: False}} for k in dict.fromkeys(names) if k not in properties]
    return alternatives


def plain_if(node: dict) -> None:
    """`if`/`then`/`else` as what they mean, in place, where the negation of `if` has a positive
    spelling (plain_not): `anyOf: [{allOf: [if, then]}, {allOf: [not if, else]}]` added to `allOf`
    (a missing `then`/`else` is `true`; `if: true`/`false` picks one; `then`/`else` without
    `if`, and `if` without either, are no assertion). Exact. Otherwise they stay as written. A
    subschema left out that names a resource (`$id`, an anchor) moves to `$defs`, where a `$ref`
    still finds it."""
    if "if" not in node or ("then" not in node and "else" not in node):
        for keyword in ("if", "then", "else"):
            _keep_resources(node, keyword, node.pop(keyword, None))
        return
    condition, then, otherwise = node["if"], node.get("then", True), node.get("else", True)
    if condition is True or (isinstance(condition, dict) and not condition.keys() - _NOTES):
        chosen, dropped = then, "else"
    elif condition is False:
        chosen, dropped = otherwise, "then"
    else:
        negated = {"not": condition}
        plain_not(negated)
        if "not" in negated:
            return
        chosen, dropped = {"anyOf": [{"allOf": [condition, then]}, {"allOf": [negated, otherwise]}]}, ""
    for keyword in ("if", "then", "else"):
        subschema = node.pop(keyword, None)
        if keyword == dropped:
            _keep_resources(node, keyword, subschema)
    if chosen is not True:
        _and(node, chosen)


def _keep_resources(node: dict, keyword: str, subschema: Any) -> None:
    """Keep a subschema that is no longer an assertion under `$defs` if a `$ref` may name it."""
    if isinstance(subschema, dict) and any(
        {"$id", "$anchor", "$dynamicAnchor"} & child.keys() for _, child in subschemas(subschema)
    ):
        defs = node.setdefault("$defs", {})
        if isinstance(defs, dict):
            defs[f"ananke:{keyword}"] = subschema


def _kinds(declared: Any) -> set[str] | None:
    names = [declared] if isinstance(declared, str) else declared if isinstance(declared, list) else None
    if names is None or not set(names) <= _TYPES:
        return None
    kinds = set(names) - {"number"}
    return kinds | {"integer", "fraction"} if "number" in names else kinds


def _type_of(kinds: set[str]) -> list[str] | None:
    """`type` for a non-empty set of kinds (None: fractions without integers)."""
    if "fraction" in kinds and "integer" not in kinds:
        return None
    names = kinds - {"integer", "fraction"}
    names |= {"number"} if "fraction" in kinds else {"integer"} if "integer" in kinds else set()
    return sorted(names)


def _set_kinds(node: dict, kinds: set[str]) -> None:
    if not kinds:
        _and(node, False)
        return
    names = _type_of(kinds)
    assert names is not None
    node["type"] = names[0] if len(names) == 1 else names


def _and(node: dict, *schemas: Any) -> None:
    node["allOf"] = [*node.get("allOf", []), *schemas]


def _and_any_of(node: dict, alternatives: list) -> None:
    """`node` and one of `alternatives` (none: nothing is valid)."""
    if len(alternatives) == 1:
        _and(node, alternatives[0])
    else:
        _and(node, {"anyOf": alternatives} if alternatives else False)


def plain_one_of(node: dict) -> bool:
    """A `oneOf` some of whose branches every instance valid under `node` satisfies anyway, as
    what it then means, in place: a branch that is `true`, says nothing, or asks only for keys
    `node` itself requires (or a `type` its own `type` already implies) always holds. With two
    such branches no instance can match exactly one: nothing is valid (`allOf: [false]`). With
    one, the instance must match none of the others: `allOf` of their negations, where each has
    a positive spelling (plain_not; otherwise the `oneOf` stays). Exact. True when rewritten."""
    branches = node["oneOf"]
    if not isinstance(branches, list) or not all(isinstance(b, (bool, dict)) for b in branches):
        return False
    implied = [i for i, branch in enumerate(branches) if _implied(branch, node)]
    if len(implied) >= 2:
        del node["oneOf"]
        _and(node, False)
        return True
    if len(implied) != 1:
        return False
    negations = []
    for i, branch in enumerate(branches):
        if i == implied[0]:
            continue
        negated = {"not": branch}
        plain_not(negated)
        if "not" in negated:
            return False
        negations.append(negated)
    del node["oneOf"]
    _and(node, *negations)
    return True


ONE_OF_MAX_BRANCHES = 4  # each branch carries the negations of all the others


def exact_one_ofs(schema: dict) -> bool:
    """Every `oneOf` (of 2 to ONE_OF_MAX_BRANCHES branches) whose branches all have a negation
    with a positive spelling (plain_not), as what it means, in place: `anyOf` over the branches,
    each with the negations of the others beside it (`allOf`) — exactly one holds. A branch that
    is a local `$ref` is negated through its target (not in a document with nested `$id`s, where
    "#/…" may name a place in another resource). For the `oneOf`s llguidance cannot prove
    exclusive. True when one was rewritten."""
    nested_ids = has_nested_ids(schema)
    changed = False
    for _, node in subschemas(schema):
        branches = node.get("oneOf")
        if not isinstance(branches, list) or not 2 <= len(branches) <= ONE_OF_MAX_BRANCHES:
            continue
        negations = []
        for branch in branches:
            view = branch if nested_ids or isinstance(branch, bool) else _resolve(branch, schema)
            if view is None or (view is branch and isinstance(view, dict) and "$ref" in view):
                break
            negated = {"not": json.loads(json.dumps(view))}  # plain_not may share what it reads
            plain_not(negated)
            if "not" in negated:
                break
            negations.append(negated)
        else:
            del node["oneOf"]
            alternatives = [
                {"allOf": [branch, *negations[:i], *negations[i + 1 :]]} for i, branch in enumerate(branches)
            ]
            _and(node, {"anyOf": alternatives})
            changed = True
    return changed


def _implied(branch: Any, node: dict) -> bool:
    """Whether every instance valid under `node` satisfies `branch` (judged by `required` and
    `type` only)."""
    if branch is True:
        return True
    if not isinstance(branch, dict) or (branch.keys() & _KEYWORDS) - _NOTES - {"required", "type"}:
        return False  # (a key that is no keyword, such as a misspelt "_format", asserts nothing)
    required, own = branch.get("required", []), node.get("required", [])
    if not isinstance(required, list) or not isinstance(own, list) or not set(required) <= set(own):
        return False
    if "type" not in branch:
        return True
    kinds, own_kinds = _kinds(branch["type"]), _kinds(node.get("type"))
    return kinds is not None and own_kinds is not None and own_kinds <= kinds


def plain_dynamic_refs(schema: dict, nodes: list[dict]) -> bool:
    """`$dynamicRef`s that can only land in one place, as a `$ref` there, in place, given the
    document's `nodes` that have `$dynamicRef` or `$dynamicAnchor`. A `$dynamicRef` looks past
    its static target only when that target has a `$dynamicAnchor` of its name, and then picks
    the outermost resource in the dynamic scope with one. With at most one `$dynamicAnchor` of
    that name in the document, that is the static target again (a JSON-pointer fragment never
    looks further); and the root resource is in every dynamic scope, outermost, so when it
    declares the name once, that is where every such `$dynamicRef` ("#name") lands. A
    `$dynamicAnchor` no `$dynamicRef` looks for any more is an `$anchor` (as a `$ref` sees it).
    Exact. True when something was rewritten."""
    counts = Counter(node["$dynamicAnchor"] for node in nodes if isinstance(node.get("$dynamicAnchor"), str))
    places = _anchor_places(schema) if any(n > 1 for n in counts.values()) else None
    still_dynamic = set()
    changed = False
    for node in nodes:
        ref = node.get("$dynamicRef")
        if not isinstance(ref, str):
            continue
        fragment = ref.partition("#")[2]
        if fragment and not fragment.startswith("/") and counts[fragment] > 1:
            target = _root_landing(schema, node, ref, places) if places is not None else None
            if target is None:
                still_dynamic.add(fragment)
                continue
            ref = target
        del node["$dynamicRef"]
        if "$ref" in node:
            _and(node, {"$ref": ref})
        else:
            node["$ref"] = ref
        changed = True
    for node in nodes:
        name = node.get("$dynamicAnchor")
        if isinstance(name, str) and name not in still_dynamic and node.get("$anchor", name) == name:
            del node["$dynamicAnchor"]
            node["$anchor"] = name
            changed = True
    return changed


@dataclass
class _Places:
    where: dict[int, tuple[str, str]]  # id(node) -> (its pointer, the pointer of its resource)
    anchors: dict[tuple[str, str], list[tuple[str, bool]]]  # (resource, name) -> (pointer, dynamic)


def _anchor_places(schema: dict) -> _Places:
    places = _Places({}, defaultdict(list))

    def walk(node: dict, pointer: str, resource: str) -> None:
        if pointer and "$id" in node:
            resource = pointer
        places.where[id(node)] = (pointer, resource)
        for keyword, dynamic in (("$anchor", False), ("$dynamicAnchor", True)):
            if isinstance(node.get(keyword), str):
                places.anchors[(resource, node[keyword])].append((pointer, dynamic))
        for _, child_pointer, child in _children(node, pointer):
            walk(child, child_pointer, resource)

    walk(schema, "", "")
    return places


_POINTER_CHARS = re.compile(r"[A-Za-z0-9_$./~-]*")


def _root_landing(schema: dict, node: dict, ref: str, places: _Places) -> str | None:
    """Where `"$dynamicRef": "#name"` at `node` lands when the root resource declares the name
    once with `$dynamicAnchor` (a `$ref` there), or its static target when that has a plain
    `$anchor`; None when it may land elsewhere or this cannot tell."""
    name = ref[1:] if ref.startswith("#") else None
    if name is None or id(node) not in places.where:
        return None
    resource = places.where[id(node)][1]
    static = places.anchors.get((resource, name), [])
    if len(static) != 1:
        return None
    if not static[0][1]:
        return ref  # a plain `$anchor`: where a `$ref` lands
    at_root = [pointer for pointer, dynamic in places.anchors.get(("", name), []) if dynamic]
    if len(at_root) != 1 or not _POINTER_CHARS.fullmatch(at_root[0]):
        return None
    if resource == "":
        return f"#{at_root[0]}"
    base = schema.get("$id")
    if not isinstance(base, str) or ":" not in base:
        return None  # no absolute base to name the root resource from inside another one
    return f"{base.split('#')[0]}#{at_root[0]}"


def refs_to_nothing(schema: dict) -> bool:
    """A definition that admits nothing (`false`, or what plain_not made of a `not` of every type:
    `allOf: [false]`) is the forbidden-property idiom; llguidance builds every definition and
    refuses such a one, though only the places that refer to it are unsatisfiable. In place:
    each plain local `$ref` to it becomes `allOf: [false]` where it stands, and the definition
    goes. Exact. Not in a document with nested `$id`s ("#/…" could then name another resource)
    nor when some `$ref` names a place inside such a definition. True when rewritten."""
    nothing = {
        f"#/{key}/{_escape(name)}": (key, name)
        for key in ("$defs", "definitions") if isinstance(schema.get(key), dict)
        for name, definition in schema[key].items() if _admits_nothing(definition)
    }  # fmt: skip
    if not nothing:
        return False
    if has_nested_ids(schema):
        return False
    nodes = [node for _, node in subschemas(schema)]
    refs = [node for node in nodes if isinstance(node.get("$ref"), str)]
    if any(ref["$ref"] not in nothing and ref["$ref"].startswith(tuple(nothing)) for ref in refs):
        return False
    for node in refs:
        if node["$ref"] in nothing and not node.keys() - _ANNOTATIONS:
            del node["$ref"]
            _and(node, False)
    if any(node.get("$ref") in nothing for node in refs):
        return True  # a $ref with siblings still names it: the definition stays
    for key, name in nothing.values():
        del schema[key][name]
    return True


def _admits_nothing(definition: Any) -> bool:
    if definition is False:
        return True
    return (
        isinstance(definition, dict)
        and definition.keys() - _NOTES == {"allOf"}
        and False in definition["allOf"]
    )


DEPENDENCIES_MAX = 6  # entries per object: each doubles the object's alternatives in the grammar


def plain_dependencies(node: dict, old_draft: bool) -> None:
    """`dependentRequired` and `dependentSchemas` (and, in drafts 4 to 7, `dependencies`, which is
    either) as the alternatives they mean, in place: for each key k, "k absent, or k present with
    its dependencies" — `{"anyOf": [{"properties": {k: false}}, {"required": [k, …]}]}` (with
    `"allOf": [schema]` for a schema dependency; `false`: k absent) — added to `allOf`. Exact: a
    non-object passes both, as it passes the original. An object with more than DEPENDENCIES_MAX
    entries stays as written (strict mode refuses it, relaxed mode drops them)."""
    keywords = ("dependentRequired", "dependentSchemas", *(("dependencies",) if old_draft else ()))
    present = [k for k in keywords if isinstance(node.get(k), dict)]
    if not present or sum(len(node[k]) for k in present) > DEPENDENCIES_MAX:
        return
    alternatives = []
    for keyword in present:
        for key, dependency in node[keyword].items():
            names = dependency if isinstance(dependency, list) and keyword != "dependentSchemas" else None
            if isinstance(dependency, dict) and dependency.keys() == {"required"}:
                names = dependency["required"]  # keys only, as a list says (and key-neutral)
            if isinstance(dependency, bool) and keyword != "dependentRequired":
                if not dependency:  # k may not appear at all
                    alternatives.append({"anyOf": [{"properties": {key: False}}]})
                continue
            if names is not None:
                if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
                    return
                holds: dict = {"required": [key, *names]}
            elif isinstance(dependency, dict) and keyword != "dependentRequired":
                holds = {"required": [key], "allOf": [dependency]}
            else:
                return
            alternatives.append({"anyOf": [{"properties": {key: False}}, holds]})
    for keyword in present:
        del node[keyword]
    _and(node, *alternatives)


# Characters a string may leave the listed ones by: no control character, quote or backslash
# (llguidance lets a class that excludes one of those still match it as an escape sequence).
_PLAIN_RANGES = ((0x20, 0x21), (0x23, 0x5B), (0x5D, 0xD7FF), (0xE000, 0x10FFFF))


def _other_strings(values: list[str]) -> str:
    """A regex (for llguidance) matching exactly the strings not in `values`, but for those that
    leave every listed string by a control character, a quote or a backslash. Built over a trie
    of `values`: at each node a string may end (if no value ends there), take a character no
    value continues with and then anything, or follow a value's next character."""
    trie: dict = {}
    for value in values:
        node = trie
        for char in value:
            node = node.setdefault(char, {})
        node[""] = {}  # a value ends here

    def after(node: dict) -> str:
        chars = sorted(c for c in node if c)
        branches = [] if "" in node else [""]
        branches.append(_class_without({ord(c) for c in chars}) + r"[\s\S]*")
        branches += [f"\\x{{{ord(c):x}}}" + after(node[c]) for c in chars]
        return "(?:" + "|".join(branches) + ")"

    return "^" + after(trie) + "$"


def _class_without(excluded: set[int]) -> str:
    parts = []
    for low, high in _PLAIN_RANGES:
        start = low
        for code in sorted(c for c in excluded if low <= c <= high):
            if code > start:
                parts.append((start, code - 1))
            start = code + 1
        if start <= high:
            parts.append((start, high))
    return "[" + "".join(f"\\x{{{a:x}}}" + (f"-\\x{{{b:x}}}" if b > a else "") for a, b in parts) + "]"


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


# ---------------------------------------------------------------- closed objects

# Where narrowing a subschema could widen (or break) the whole: under `not` and `if` the meaning
# flips, a narrower `oneOf` branch can make an instance match one branch instead of two, and
# closing one `allOf` branch would forbid the keys another one declares.
_FLIPS = frozenset({"not", "if", "oneOf", "allOf", "propertyNames"})
# Keywords that bring keys from elsewhere: an object with any of them is not closed.
_COMPOSES = frozenset(
    {"allOf", "anyOf", "oneOf", "$ref", "$dynamicRef", "$recursiveRef", "if", "then", "else",
     "dependentSchemas", "dependencies", "not"}
)  # fmt: skip
# What an object may say about undeclared keys: honoured as written.
_SAYS_EXTRA = frozenset({"additionalProperties", "patternProperties", "unevaluatedProperties"})
_ANNOTATIONS = frozenset({"$ref", "title", "description", "default", "examples", "$comment", "deprecated"})
# Subschemas that apply to the same instance as their parent (in place), and what a parent may
# say about that instance's keys besides them.
_IN_PLACE = frozenset({"anyOf", "oneOf", "allOf", "then", "else", "dependentSchemas", "not", "if"})
_KEYS_BESIDE = _SAYS_EXTRA | _COMPOSES | {"properties", "required", "dependentRequired"}


def _closable_under(node: dict, key: str) -> bool:
    """Whether closing a subschema under `node[key]` only narrows what can be generated: not
    under a keyword that flips (an instance two `oneOf` branches took becomes valid), and not
    in place beside other keys of the same instance (`{"properties": {"a": …}, "anyOf":
    [{"properties": {"b": …}}]}`: a closed branch would forbid `a`)."""
    return key not in _FLIPS and not (key in _IN_PLACE and (_KEYS_BESIDE - {key}) & node.keys())


def _closable(node: dict) -> bool:
    properties = node.get("properties")
    required = node.get("required", [])
    composes = (_SAYS_EXTRA | _COMPOSES) & node.keys()
    neutral = composes == {"allOf"} and isinstance(properties, dict) and isinstance(node["allOf"], list)
    if neutral and all(_key_neutral(entry, properties) for entry in node["allOf"]):
        composes = set()  # an allOf that names declared keys only
    return (
        isinstance(properties, dict)
        and bool(properties)
        and not composes
        and isinstance(required, list)
        and all(key in properties for key in required)
        and not {"$anchor", "$dynamicAnchor", "$recursiveAnchor"} & node.keys()
    )


# Keywords by which a subschema may bring keys an object's `properties` does not list.
_KEY_SOURCES = frozenset(
    {"$ref", "$dynamicRef", "$recursiveRef", "patternProperties", "additionalProperties",
     "unevaluatedProperties", "propertyNames", "dependentSchemas", "dependencies", "if", "not"}
)  # fmt: skip


def _key_neutral(entry: Any, declared: dict) -> bool:
    """Whether an `allOf` entry (a rewritten `not`, dependency or `if`) names only keys the object
    declares, in place: closing the object beside it leaves every alternative of it possible."""
    if isinstance(entry, bool):
        return True
    if not isinstance(entry, dict) or not _KEY_SOURCES.isdisjoint(entry):
        return False
    properties, required = entry.get("properties", {}), entry.get("required", [])
    if not isinstance(properties, dict) or not isinstance(required, list):
        return False
    if not {*properties, *required} <= declared.keys():
        return False
    branches = [child for key in ("allOf", "anyOf", "oneOf") for child in entry.get(key, ())]
    return all(_key_neutral(child, declared) for child in branches)


def _children(node: dict, pointer: str) -> Iterator[tuple[str, str, dict]]:
    """(keyword, pointer, child) for each subschema directly under `node`."""
    for key in _ONE:
        if isinstance(node.get(key), dict):
            yield key, f"{pointer}/{key}", node[key]
    for key in _LIST:
        if isinstance(node.get(key), list):
            for i, item in enumerate(node[key]):
                if isinstance(item, dict):
                    yield key, f"{pointer}/{key}/{i}", item
    for key in _MAP:
        if isinstance(node.get(key), dict):
            for name, item in node[key].items():
                if isinstance(item, dict):
                    yield key, f"{pointer}/{key}/{_escape(name)}", item


def close_objects(schema: Any) -> list[str]:
    """Add `"additionalProperties": false`, in place, to each object that declares `properties`
    and says nothing about other keys, and narrow the branches of each overlapping `oneOf` apart
    (_kept_apart); return the JSON pointers of those objects and those `oneOf`s (`…/oneOf`).

    Only where it narrows the whole schema: every instance valid after this is valid before
    (a keyword added to an object is one more assertion), and never under `not`, `if`, `oneOf`,
    `allOf`, nor in place beside other keys of the same instance (see _closable_under), nor on an
    object that composes other schemas (but an `allOf` naming only its declared keys: _key_neutral)
    or is reached by a `$ref` from such a place. A definition
    is closed only when every `$ref` to it is a plain reference (no sibling keywords) from a place
    where closing is allowed.
    """
    if not isinstance(schema, dict):
        return []
    # One walk closes every candidate and notes each local $ref; a candidate inside a definition
    # that turns out open is reopened afterwards. Each comes with the pointers from the root to it.
    refs: list[tuple[tuple[str, ...], bool, str]] = []  # (path, open wherever it leads, target)
    # (path, node, None for an object closed, else the node's oneOf branches before narrowing)
    candidates: list[tuple[tuple[str, ...], dict, list | None]] = []
    path: list[str] = []

    @functools.cache
    def nested_ids() -> bool:
        """Whether a subschema has its own `$id` (a "#/…" inside it then names a place in it,
        which _resolve does not follow)."""
        return has_nested_ids(schema)

    def walk(node: dict, pointer: str, closable: bool) -> None:
        path.append(pointer)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            refs.append((tuple(path), not closable or bool(node.keys() - _ANNOTATIONS), ref[1:]))
        if closable and _closable(node):  # never a $ref node: closing adds no $ref sibling
            node["additionalProperties"] = False
            candidates.append((tuple(path), node, None))
        if closable and isinstance(node.get("oneOf"), list) and not nested_ids():
            apart = _kept_apart(node, schema)
            if apart is not None:
                candidates.append((tuple(path), node, node["oneOf"]))
                node["oneOf"] = apart
        if not _SUBSCHEMA_KEYS.isdisjoint(node):
            for key, child_pointer, child in _children(node, pointer):
                walk(child, child_pointer, closable and _closable_under(node, key))
        path.pop()

    walk(schema, "", True)
    open_defs: set[str] = set()  # definitions some $ref uses where closing is not allowed
    for _ in range(16):  # until no new definition is found open (they only ever grow)
        found = {target for at, always, target in refs if always or not open_defs.isdisjoint(at)}
        if found <= open_defs:
            break
        open_defs |= found
    closed: list[str] = []
    for at, node, branches in candidates:
        if open_defs.isdisjoint(at):
            closed.append(f"{at[-1]}/oneOf" if branches is not None else at[-1] or "/")
        elif branches is not None:
            node["oneOf"] = branches
        else:
            del node["additionalProperties"]
    return closed


# ---------------------------------------------------------------- oneOf branches kept apart

_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})


def _resolve(node: Any, root: dict, depth: int = 0) -> Any:
    """The subschema a local `{"$ref": "#/…"}` names (followed up to 8 times); the node itself
    when it is no such plain reference; None when the reference cannot be followed here."""
    if not isinstance(node, dict) or "$ref" not in node:
        return node
    ref = node["$ref"]
    if depth > 8 or not isinstance(ref, str) or not ref.startswith("#/") or node.keys() - _ANNOTATIONS:
        return None
    target: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            return None
        target = target[part]
    return _resolve(target, root, depth + 1)


def _types(node: dict) -> set[str] | None:
    """The JSON types `node` allows by its `type` keyword (None: any)."""
    declared = node.get("type")
    names = {declared} if isinstance(declared, str) else set(declared) if isinstance(declared, list) else None
    if names is None or not names <= _TYPES:
        return None
    return names | {"integer"} if "number" in names else names


def _values(node: Any, root: dict) -> list | None:
    """The values a property's schema allows by `const` or `enum` (None: not a finite list)."""
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return None
    if "const" in node:
        return [node["const"]]
    return node["enum"] if isinstance(node.get("enum"), list) else None


def _disjoint(a: list, b: list) -> bool:
    return not {json.dumps(v, sort_keys=True) for v in a} & {json.dumps(v, sort_keys=True) for v in b}


def _kept_apart(node: dict, root: dict) -> list | None:
    """The `oneOf` branches of `node`, each narrowed so that an instance valid under it is invalid
    under every *other original* branch — then exactly one branch holds, and the oneOf validates
    whatever the narrowed branches take (their union is a subset of the original oneOf). Per pair
    of branches, in this order: their `type`s do not meet; a property both give as a `const`/
    `enum` with no common value becomes required in this branch (a discriminator the schema left
    optional); a key the other branch requires (and neither this branch nor the parent does) is
    forbidden here. An object separator makes the branch an object schema. None when some pair
    cannot be kept apart this way: the oneOf is left as it was, since a partly narrowed branch
    could make an instance that two branches took, and so invalid, match one branch only."""
    branches = node["oneOf"]
    if len(branches) < 2:
        return None
    views = [b if isinstance(b, bool) else _resolve(b, root) for b in branches]
    if any(v is None or v is True for v in views):
        return None
    parent_required = set(node.get("required", [])) if isinstance(node.get("required"), list) else set()
    parent_types = _types(node)
    apart: list = []
    for i, (branch, view) in enumerate(zip(branches, views, strict=True)):
        if view is False:
            apart.append(branch)
            continue
        types = _types(view)
        if parent_types is not None:  # the parent's `type` holds for the same instance
            types = parent_types if types is None else types & parent_types
        object_only = False  # whether being an object already keeps it apart from some branch
        required = set(view.get("required", [])) if isinstance(view.get("required"), list) else set()
        properties = view.get("properties") if isinstance(view.get("properties"), dict) else {}
        must, forbid = set(), set()
        for j, other in enumerate(views):
            if j == i or other is False:
                continue
            other_types = _types(other)
            if types is not None and other_types is not None and not types & other_types:
                continue
            if types is None and other_types is not None and "object" not in other_types:
                object_only = True  # made an object schema below
                continue
            if types is not None and "object" not in types:
                return None  # only object keys can tell these two apart here
            other_properties = other.get("properties") if isinstance(other.get("properties"), dict) else {}
            discriminators = [
                key for key in properties
                if key in other_properties
                and (mine := _values(properties[key], root)) is not None
                and (theirs := _values(other_properties[key], root)) is not None
                and _disjoint(mine, theirs)
            ]  # fmt: skip
            other_required = other.get("required") if isinstance(other.get("required"), list) else []
            keys = [k for k in other_required if isinstance(k, str) and k not in required | parent_required]
            if discriminators:
                must.add(discriminators[0])
            elif keys:
                forbid.add(keys[0])
            else:
                return None
        if must & forbid:
            return None
        if not must and not forbid and not object_only:
            apart.append(branch)
            continue
        narrowed = dict(branch)  # a $ref branch gets them beside its $ref (2020-12: both apply)
        own_required = list(branch.get("required") or [])
        if must - set(own_required) - required:
            narrowed["required"] = [*own_required, *sorted(must - set(own_required) - required)]
        if forbid:
            forbidden = dict.fromkeys(sorted(forbid), False)
            narrowed["properties"] = {**(branch.get("properties") or {}), **forbidden}
        if types != {"object"}:  # keys (or being an object) tell it apart only as an object
            narrowed["type"] = "object"
        apart.append(narrowed)
    return apart if apart != branches else None  # None: they were apart already
