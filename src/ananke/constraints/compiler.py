"""Constraint compiler: a list of `PyConstraintIR` → one llguidance grammar + a stable hash.

Semantics (DESIGN.md): every field of every constraint must hold. What one llguidance grammar
can enforce exactly is enforced per token:

* regexes only (from any number of constraints): their intersection, as one lexeme `/a/ & /b/`;
* otherwise the first JSON schema or grammar (in request order).

Everything else is listed in `validated_only`: it is not enforced while decoding, only checked
by the independent validator afterwards. Nothing is claimed enforced that is not.

Compilation is model-independent: grammars are checked with llguidance's validator over a
256-byte tokenizer, so a compiled constraint can be hashed, cached and sent to any engine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import llguidance as llg
from llguidance.gbnf_to_lark import gbnf_to_lark

from ananke.constraints import schemas
from ananke.constraints.faults import constraint_fault, first_step_error
from ananke.errors import ConstraintCompileError
from ananke.threads import call_with_big_stack
from ananke.types import PyConstraintIR, check_schema_mode

# Bump when the compiled output for the same input changes; part of every hash.
COMPILER_VERSION = "ananke-compiler/2"  # 2: objects decoded closed by default

# JSON output is compact (no free whitespace): a small model cannot wander off into blank lines,
# and the token count stays minimal. A schema may still override this via "x-guidance".
JSON_DEFAULTS = {"whitespace_flexible": False}

_START_RULE = re.compile(r"^\s*[?!]?start\s*:", re.MULTILINE)
_ROOT_RULE = re.compile(r"^\s*[?!]?root\s*:", re.MULTILINE)


@dataclass(frozen=True)
class CompileLimits:
    """Caps that keep any input from stalling the process ("grammar bombs")."""

    max_input_bytes: int = 1 << 20  # per field of a constraint
    time_budget_s: float = 10.0  # CPU time for one compile (wall time capped at 10x: ananke.threads)
    max_grammar_size: int = 500_000  # llguidance symbols
    initial_lexer_fuel: int = 1_000_000
    max_lexer_states: int = 50_000  # the memory cap: about 1-2 kB each, so ~100 MB at most

    def parser_limits(self) -> llg.LLParserLimits:
        return llg.LLParserLimits(
            max_grammar_size=self.max_grammar_size,
            initial_lexer_fuel=self.initial_lexer_fuel,
            max_lexer_states=self.max_lexer_states,
            verbose_errors=False,  # errors may reach HTTP clients; keep them free of internals
        )


@dataclass(frozen=True)
class CompiledConstraints:
    """The immutable, cacheable result of compiling a constraint list.

    `grammar` is None when nothing is enforced (an empty list).
    """

    hash: str
    grammar: str | None
    enforced: tuple[str, ...] = ()
    validated_only: tuple[str, ...] = ()
    compiled_at: int = 0
    compile_time_ms: float = 0.0
    constraint_names: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    schema_mode: str = "strict"
    relaxed: tuple[str, ...] = ()  # "<constraint>: <json pointer>/<keyword>: <what was done>"
    closed_objects: bool = True
    closed: tuple[str, ...] = ()  # "<constraint>: <json pointer>" of each object decoded closed

    def to_dict(self) -> dict[str, Any]:
        """The `compile_constraints` answer (API.md keys first)."""
        return {
            "hash": self.hash,
            "compiled_at": self.compiled_at,
            "schema": self.grammar or "",
            "enforced": list(self.enforced),
            "validated_only": list(self.validated_only),
            "compile_time_ms": round(self.compile_time_ms, 3),
            "warnings": list(self.warnings),
            "schema_mode": self.schema_mode,
            "relaxed": list(self.relaxed),
            "closed_objects": self.closed_objects,
            "closed": list(self.closed),
        }


def constraints_hash(
    constraints: list[PyConstraintIR], schema_mode: str = "strict", closed_objects: bool = True
) -> str:
    """SHA-256 over the compiler version and each constraint's fields, in order, as given.

    Covers: COMPILER_VERSION, and for every constraint its name, json_schema text, grammar text
    and regex list, byte for byte. Schemas are not re-serialised: key order changes the output
    (llguidance emits properties in schema order), so two spellings are two constraints.
    Independent of process, machine, Python hash seed and llguidance version. Relaxed mode adds
    its name, open objects (closed_objects=False) the word "open-objects".
    """
    digest = hashlib.sha256(COMPILER_VERSION.encode())
    if schema_mode != "strict":
        _hash_field(digest, "mode", schema_mode)
    if not closed_objects:
        _hash_field(digest, "mode", "open-objects")
    for c in constraints:  # each field length-prefixed: no two lists hash the same bytes
        _hash_field(digest, "constraint", c.name)
        _hash_field(digest, "json_schema", c.json_schema)
        _hash_field(digest, "grammar", c.grammar)
        for pattern in c.regex_patterns:
            _hash_field(digest, "regex", pattern)
    return digest.hexdigest()


def _hash_field(digest: Any, label: str, text: str | None) -> None:
    """Feed one field as `label len:` and its UTF-8 bytes (`label -` for None): the text is
    hashed as given, never re-serialised (a JSON dump of a large schema cost more than the hash)."""
    if text is None:
        digest.update(f"|{label} -".encode())
        return
    data = text.encode("utf-8", "surrogatepass")
    digest.update(f"|{label} {len(data)}:".encode())
    digest.update(data)


class _ByteTokens:
    """A 256-byte vocabulary plus EOS: enough for llguidance to check and run any grammar."""

    def __init__(self) -> None:
        self.eos_token_id = 256
        self.bos_token_id = None
        self.tokens = [bytes([i]) for i in range(256)] + [b"\xff<eos>"]
        self.special_token_ids = [256]

    def __call__(self, data: bytes) -> list[int]:
        return list(data)


_byte_tokenizer: llg.LLTokenizer | None = None
_byte_tokenizer_lock = threading.Lock()


def byte_tokenizer() -> llg.LLTokenizer:
    global _byte_tokenizer
    with _byte_tokenizer_lock:
        if _byte_tokenizer is None:
            _byte_tokenizer = llg.LLTokenizer(llg.TokenizerWrapper(_ByteTokens()), slices=[])
        return _byte_tokenizer


# ---------------------------------------------------------------- one field → llguidance text


def parse_schema(name: str, text: str) -> dict | bool:
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConstraintCompileError(
            f"json_schema is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            name,
        ) from None
    except RecursionError:
        raise ConstraintCompileError("json_schema is nested too deeply to parse", name) from None
    if not isinstance(schema, (dict, bool)):
        raise ConstraintCompileError(
            f"json_schema must be a JSON object or boolean, got {type(schema).__name__}", name
        )
    return schema


# Keywords whose values are counts: JSON Schema allows 2.0 where llguidance insists on 2.
COUNT_KEYWORDS = frozenset(
    {"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
     "minContains", "maxContains"}
)  # fmt: skip
MAX_ONE_OF_REFINEMENTS = 16  # oneOf locations tried one by one for exact enforcement


def _integral_counts(node: dict) -> None:
    for key in COUNT_KEYWORDS & node.keys():
        if isinstance(node[key], float) and node[key].is_integer():
            node[key] = int(node[key])


def _class_literals_in(node: dict) -> None:
    """A `pattern` and the `patternProperties` regexes as JSON Schema reads them (class_literals)."""
    if isinstance(node.get("pattern"), str):
        node["pattern"] = class_literals(node["pattern"])
    if isinstance(node.get("patternProperties"), dict):
        node["patternProperties"] = {class_literals(k): v for k, v in node["patternProperties"].items()}


@functools.lru_cache(maxsize=512)
def _knows_format(name: str) -> bool:
    """Whether llguidance enforces the string format `name` (asked once per name per process)."""
    try:
        grammar = llg.LLMatcher.grammar_from_json_schema(json.dumps({"type": "string", "format": name}))
    except ValueError as exc:
        return "Unknown format" not in str(exc)
    error = llg.LLMatcher.validate_grammar(grammar, byte_tokenizer())
    return "Unknown format" not in error


def _may_be_string(node: dict) -> bool:
    """Whether `format` applies to the node as llguidance reads it (it ignores it elsewhere)."""
    kind = node.get("type")
    return kind is None or kind == "string" or (kind.__class__ is list and "string" in kind)


DEPENDENT_KEYWORDS = frozenset({"dependentRequired", "dependentSchemas", "dependencies"})
REWRITTEN_KEYWORDS = DEPENDENT_KEYWORDS | {"not", "if", "then", "else"}


def _prepare(name: str, schema: dict, rewrite: bool = True) -> tuple[set[str], bool]:
    """In place, in one walk: the 2020-12 spelling of the schema's draft, `unevaluated*` as the
    `additional*` it means where nothing else evaluates (schemas.plain_unevaluated), the `not`s
    that have a positive meaning (schemas.plain_not), the `if`s whose negation has one
    (schemas.plain_if), dependencies as the alternatives they mean (schemas.plain_dependencies),
    integral counts, and no `format` llguidance does not know on a node that may be a string (an
    annotation; asking llguidance first would cost a second compile). Returns the formats
    dropped and whether a `not`, `if` or dependency was rewritten (`rewrite=False`: they stay
    as written)."""
    draft = schemas.draft_of(name, schema)
    translate = schemas.translator(draft)
    unevaluated = draft in ("2019-09", "2020-12")  # older drafts have no such keywords
    conditionals = draft not in ("draft-04", "draft-06")  # if/then/else: from draft-07 on
    unknown: set[str] = set()
    rewrote = False
    dynamic: list[dict] = []  # nodes with $dynamicRef or $dynamicAnchor

    def change(node: dict) -> None:
        nonlocal rewrote
        if translate is not None:
            translate(node)
        if unevaluated and ("unevaluatedProperties" in node or "unevaluatedItems" in node):
            schemas.plain_unevaluated(node)
        if rewrite and not REWRITTEN_KEYWORDS.isdisjoint(node):
            rewrote = True
            if conditionals and ("if" in node or "then" in node or "else" in node):
                schemas.plain_if(node)
            if "not" in node:
                schemas.plain_not(node)
            if not DEPENDENT_KEYWORDS.isdisjoint(node):
                schemas.plain_dependencies(node, old_draft=not unevaluated)
        if rewrite and "oneOf" in node and schemas.plain_one_of(node):
            rewrote = True
        if "$dynamicRef" in node or "$dynamicAnchor" in node:
            dynamic.append(node)
        if not COUNT_KEYWORDS.isdisjoint(node):
            _integral_counts(node)
        if "pattern" in node or "patternProperties" in node:
            _class_literals_in(node)
        fmt = node.get("format")
        if fmt.__class__ is str and _may_be_string(node) and not _knows_format(fmt):
            del node["format"]
            unknown.add(fmt)

    schemas.each_subschema(schema, change)
    if rewrite and dynamic and schemas.plain_dynamic_refs(schema, dynamic):
        rewrote = True
    if rewrite and schemas.refs_to_nothing(schema):
        rewrote = True
    schema.pop("$schema", None)  # now in 2020-12 terms, llguidance's own
    return unknown, rewrote


@dataclass
class _Relaxations:
    """What to leave out of a schema so that llguidance accepts it (formats: in both modes)."""

    formats: set[str] = field(default_factory=set)
    keywords: set[str] = field(default_factory=set)
    one_of: set[str] = field(default_factory=set)  # pointers whose oneOf is enforced as anyOf
    optional_key_counts: bool = False
    all_counts: bool = False
    remote_refs: set[str] = field(default_factory=set)
    patterns: bool = False
    fractional_multiple_of: bool = False

    def apply(self, base: Any) -> tuple[Any, list[str]]:
        if self == _Relaxations():
            return base, []  # the common case: nothing to leave out, no copy to make
        relaxed: list[str] = []
        schema = schemas.one_of_as_any_of(base, self.one_of)
        relaxed += [f"{p}/oneOf: enforced as anyOf" for p in sorted(self.one_of)]
        schema = schemas.drop_matching(
            schema, "format", lambda v: v in self.formats, "unknown format, an annotation", []
        )
        schema = schemas.drop_keywords(schema, self.keywords, relaxed)
        if self.optional_key_counts:
            schema = schemas.drop_optional_key_counts(schema, relaxed)
        if self.all_counts:
            schema = schemas.drop_keywords(schema, {"minProperties", "maxProperties"}, relaxed)
        for url in sorted(self.remote_refs):
            schema = schemas.drop_matching(
                schema, "$ref", lambda ref, url=url: _names_resource(ref, url),
                f"remote reference {url!r} is not available offline, not enforced", relaxed,
            )  # fmt: skip
        if self.patterns:
            schema = schemas.drop_matching(
                schema, "pattern", _regex_unsupported, "regex syntax llguidance lacks, not enforced", relaxed
            )
        if self.fractional_multiple_of:
            schema = schemas.drop_matching(
                schema, "multipleOf", lambda v: not float(v).is_integer(), "not enforced", relaxed
            )
        return schema, relaxed

    def learn(self, error: str, base: Any) -> bool:
        """Add the relaxation that answers llguidance's `error`; False when none does."""
        keys = re.search(r"Unimplemented keys: \[(.*?)\]", error)
        if keys:
            named = {k.strip().strip('"') for k in keys.group(1).split(",")}
            if not named <= schemas.DROPPABLE or named <= self.keywords:
                return False
            self.keywords |= named
            return True
        if "oneOf constraints are not supported" in error:
            pointers = set(schemas.one_of_pointers(base)) - self.one_of
            self.one_of |= pointers
            return bool(pointers)
        if "min/maxProperties only supported" in error:
            if self.optional_key_counts:
                self.all_counts = not self.all_counts
                return self.all_counts
            self.optional_key_counts = True
            return True
        remote = re.search(r"Resource '([^']+)' is not present in a registry", error)
        if remote and remote.group(1) not in self.remote_refs:
            self.remote_refs.add(remote.group(1))
            return True
        if re.search(r"(?i)lookaround|regex", error) and not self.patterns:
            self.patterns = True
            return True
        if "multipleOf" in error and not self.fractional_multiple_of:
            self.fractional_multiple_of = True
            return True
        return False


def _names_resource(ref: Any, url: str) -> bool:
    """Whether a `$ref` value (absolute or relative) points into the resource `url`."""
    if not isinstance(ref, str):
        return False
    document = ref.split("#", 1)[0].lstrip("./")
    return bool(document) and url.split("#", 1)[0].endswith(document)


def _regex_unsupported(pattern: Any) -> bool:
    if not isinstance(pattern, str):
        return False
    grammar = llg.LLMatcher.grammar_from_regex(normalise_regex(pattern))
    return bool(llg.LLMatcher.validate_grammar(grammar, byte_tokenizer()))


def _matcher(grammar: str, limits: CompileLimits) -> llg.LLMatcher:
    """A byte-level matcher; building it validates the grammar (is_error/get_error say how).

    One matcher both validates and answers start_state: validate_grammar and then a matcher
    would build the grammar twice (its messages are the same as the matcher's error).
    """
    return llg.LLMatcher(byte_tokenizer(), grammar, log_level=0, limits=limits.parser_limits())


def _try_schema(schema: Any, limits: CompileLimits) -> tuple[str, llg.LLMatcher | None, str]:
    """(grammar, matcher, "") or (grammar, matcher, llguidance's error)."""
    try:
        grammar = llg.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_DEFAULTS)
    except ValueError as exc:
        return "", None, f"rejected: {exc}"
    matcher = _matcher(grammar, limits)
    return grammar, matcher, matcher.get_error() if matcher.is_error() else ""


def compile_schema(
    name: str, text: str, limits: CompileLimits, schema_mode: str = "strict", closed_objects: bool = True
) -> tuple[str, llg.LLMatcher, list[str], list[str], list[str]]:
    """The llguidance grammar of a JSON schema, its matcher, warnings, what relaxed mode left out,
    and the objects decoded closed.

    The schema is first read in its own draft (see ananke.constraints.schemas). A `format`
    llguidance does not know is an annotation (as JSON Schema 2019-09 and later define it): the
    string is enforced without it, and a warning names the format. In strict mode everything
    else llguidance cannot enforce is an error; in relaxed mode it is weakened and listed. With
    `closed_objects`, objects that do not say what other keys they take are decoded without
    undeclared keys (schemas.close_objects: the output stays valid under the schema as written).
    """
    try:
        return _compile_schema(name, text, limits, schema_mode, closed_objects, rewrite=True)
    except _RewriteFailed:
        # llguidance refused what the rewrites made of it — a circular $ref that now has sibling
        # keys, or a definition nothing requires that became `false`, which llguidance builds
        # anyway — so compile it as written, as before them: never worse off for the rewrites
        return _compile_schema(name, text, limits, schema_mode, closed_objects, rewrite=False)


class _RewriteFailed(Exception):
    """A schema with rewrites (schemas.plain_*) that llguidance refused, not for want of any
    valid instance."""


def _compile_schema(
    name: str, text: str, limits: CompileLimits, schema_mode: str, closed_objects: bool, rewrite: bool
) -> tuple[str, llg.LLMatcher, list[str], list[str], list[str]]:
    base = parse_schema(name, text)
    if base is True:
        base = {}  # the schema that accepts every JSON document
    state = _Relaxations()
    rewrote = False
    if isinstance(base, dict):  # in place: `base` was parsed for this compile
        state.formats, rewrote = _prepare(name, base, rewrite)
    closed = schemas.close_objects(base) if closed_objects else []
    one_ofs_rewritten = False
    for _ in range(64):  # one round per thing learnt
        schema, relaxed = state.apply(base)
        grammar, matcher, error = _try_schema(schema, limits)
        if not error:
            break
        if rewrite and not one_ofs_rewritten and "oneOf constraints are not supported" in error:
            one_ofs_rewritten = True  # llguidance could not prove them exclusive: say it outright
            if isinstance(base, dict) and schemas.exact_one_ofs(base):
                rewrote = True
                continue
        unknown = re.search(r"Unknown format: ?(\S*)", error)
        if unknown and unknown.group(1).strip("\"'`.,") not in state.formats:
            state.formats.add(unknown.group(1).strip("\"'`.,"))
            continue
        if schema_mode != "relaxed" or not state.learn(error, base):
            if rewrote and not _proves_nothing_valid(error):
                raise _RewriteFailed
            hint = " (schema_mode='relaxed' can weaken it and validate afterwards)"
            relaxable = schema_mode != "relaxed" and _Relaxations().learn(error, base)
            raise ConstraintCompileError(f"json_schema: {_explain(error)}{hint if relaxable else ''}", name)
    else:
        raise ConstraintCompileError("json_schema: too many rounds of relaxation", name)
    if len(state.one_of) <= MAX_ONE_OF_REFINEMENTS:  # keep exact every oneOf llguidance can prove
        for pointer in sorted(state.one_of):
            state.one_of.discard(pointer)
            trial, trial_relaxed = state.apply(base)
            trial_grammar, trial_matcher, trial_error = _try_schema(trial, limits)
            if trial_error:
                state.one_of.add(pointer)
            else:
                grammar, matcher, relaxed = trial_grammar, trial_matcher, trial_relaxed
    warnings = [
        f"{name}: format {fmt!r} is not enforced while decoding (an annotation since JSON Schema "
        "2019-09); the validator checks it only if jsonschema knows it"
        for fmt in sorted(state.formats)
    ]
    relaxed = [f"{name}: {where}" for where in relaxed]
    return grammar, matcher, warnings, relaxed, [f"{name}: {pointer}" for pointer in closed]


def _proves_nothing_valid(error: str) -> bool:
    """llguidance found that no instance satisfies the whole schema (not merely some definition
    of it, which it builds whether or not anything requires it)."""
    return error.startswith("Unsatisfiable schema") and "while processing" not in error


def class_literals(pattern: str) -> str:
    """The pattern with what JSON Schema's (ECMA-262's) and Python's regexes read as literals
    inside a character class escaped for llguidance, whose Rust syntax reads `[` there as a
    nested class and `&&`, `--`, `~~` as set operations (`[[a-z]-]*` would take "a-b-c")."""
    if "[" not in pattern:
        return pattern
    out, i, in_class, atom = [], 0, False, False  # atom: the last item may start a range
    while i < len(pattern):
        char = pattern[i]
        if not in_class:
            step = 2 if char == "\\" else 1
            out.append(pattern[i : i + step])
            i += step
            if char == "[":  # a `^`, then a `]`, right after `[` belong to the class as written
                in_class, atom = True, False
                for lead in "^]":
                    if pattern.startswith(lead, i):
                        out.append(lead)
                        i, atom = i + 1, lead == "]"
            continue
        if char == "]":
            in_class = False
        elif char == "-" and atom and i + 1 < len(pattern) and pattern[i + 1] != "]":  # a range
            end = pattern[i + 1 : i + 3] if pattern.startswith("\\", i + 1) else pattern[i + 1]
            out.append("-" + ("\\" + end if end in "[&-~" else end))
            i, atom = i + 1 + len(end), False
            continue
        elif char == "\\":
            out.append(pattern[i : i + 2])
            i, atom = i + 2, True
            continue
        elif char == "[" or (char in "&-~" and pattern.startswith(char, i + 1)):
            out.append("\\")
        out.append(char)
        i, atom = i + 1, True
    return "".join(out)


def normalise_regex(pattern: str) -> str:
    """Drop a leading `^`/`\\A` and a trailing unescaped `$`/`\\Z`: llguidance matches whole text."""
    if pattern.startswith("^"):
        pattern = pattern[1:]
    elif pattern.startswith("\\A"):
        pattern = pattern[2:]
    if pattern.endswith("\\Z") and _unescaped_at(pattern, len(pattern) - 2):
        pattern = pattern[:-2]
    elif pattern.endswith("$") and _unescaped_at(pattern, len(pattern) - 1):
        pattern = pattern[:-1]
    return class_literals(pattern)


def _unescaped_at(text: str, index: int) -> bool:
    backslashes = len(text[:index]) - len(text[:index].rstrip("\\"))
    return backslashes % 2 == 0


def regex_lexeme(name: str, index: int, pattern: str) -> str:
    """The pattern as a Lark `/…/` lexeme, after Python's own syntax check (for the position)."""
    try:
        with warnings.catch_warnings():  # FutureWarnings about Python-only syntax are not ours
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(pattern)
    except re.error as exc:
        raise ConstraintCompileError(
            f"regex_patterns[{index}] {pattern!r} is invalid at position {exc.pos}: {exc.msg}", name
        ) from None
    return "/" + llg.regex_to_lark(normalise_regex(pattern), "") + "/"


def grammar_to_lark(name: str, text: str) -> str:
    """Lark (with `start:` or the seed's `root:`) or GBNF (`::=`) → llguidance Lark."""
    if "::=" in text:
        try:
            return gbnf_to_lark(text)  # maps GBNF's `root` to `start`
        except Exception as exc:  # the converter raises bare Exceptions with a line number
            raise ConstraintCompileError(f"invalid GBNF grammar: {exc}", name) from None
    if _START_RULE.search(text):
        return text
    if _ROOT_RULE.search(text):
        return "start: root\n" + text
    raise ConstraintCompileError("grammar has no start rule: define `start:` (or `root:`)", name)


def part_grammar(name: str, kind: str, text: str) -> str:
    """The llguidance grammar of a `grammar` field, or (kind "regex") of a Lark lexeme."""
    if kind == "grammar":
        return llg.LLMatcher.grammar_from_lark(grammar_to_lark(name, text))
    return llg.LLMatcher.grammar_from_lark(f"start: {text}")


def _explain(error: str) -> str:
    """Make llguidance's terse errors say what a user can act on."""
    fault = constraint_fault(error)  # a limit: named, with a hint to simplify
    if fault is not None:
        return fault
    match = re.search(r"Unimplemented keys: \[(.*?)\]", error)
    if match:
        keys = ", ".join(k.strip().strip('"') for k in match.group(1).split(","))
        return f"unsupported JSON Schema keyword(s): {keys} (cannot be enforced, so not accepted)"
    if "min/maxProperties only supported" in error:
        return (
            "minProperties/maxProperties can only be enforced where every key listed in "
            '"properties" is required'
        )
    match = re.search(r"Unknown format: (\S+)", error)
    if match:
        return f"unsupported JSON Schema format: {match.group(1)!r}"
    return error.strip()


def check_grammar(name: str | None, what: str, grammar: str, limits: CompileLimits) -> llg.LLMatcher:
    """The grammar's byte-level matcher, or a ConstraintCompileError with llguidance's reason."""
    matcher = _matcher(grammar, limits)
    if matcher.is_error():
        raise ConstraintCompileError(f"{what}: {_explain(matcher.get_error())}", name)
    return matcher


def start_state(matcher: llg.LLMatcher) -> tuple[bool, bool]:
    """(accepts the empty output, can emit a first byte) for a fresh matcher without error."""
    first_bytes = matcher.compute_bitmask()[:32]  # bit i: byte i may come first (256: EOS)
    return matcher.is_accepting(), first_bytes.count(0) < 32


# ---------------------------------------------------------------- the list → one grammar


def _probe_first_step(matcher: llg.LLMatcher, enforced: list[str]) -> None:
    """Refuse now, not mid-decode, a grammar that trips an llguidance limit on its first byte."""
    error = first_step_error(matcher)
    if error is None:
        return
    names = {label.rsplit(":", 1)[0] for label in enforced}
    what = enforced[0].rsplit(":", 1)[1] if len(enforced) == 1 else "intersection of the regexes"
    what = what.replace("regex[", "regex_patterns[")
    raise ConstraintCompileError(f"{what}: {_explain(error)}", names.pop() if len(names) == 1 else None)


def _check_sizes(c: PyConstraintIR, limits: CompileLimits) -> None:
    for label, text in [("json_schema", c.json_schema), ("grammar", c.grammar)] + [
        (f"regex_patterns[{i}]", p) for i, p in enumerate(c.regex_patterns)
    ]:
        if text is not None and len(text.encode()) > limits.max_input_bytes:
            raise ConstraintCompileError(
                f"{label} is {len(text.encode())} bytes, over the {limits.max_input_bytes}-byte cap",
                c.name,
            )


def _compile(
    constraints: list[PyConstraintIR], limits: CompileLimits, schema_mode: str, closed_objects: bool
) -> CompiledConstraints:
    start = time.perf_counter()
    structural: list[tuple[str, str, llg.LLMatcher]] = []  # (label, grammar, matcher) of schemas and grammars
    regexes: list[tuple[str, str]] = []  # (label, lark lexeme)
    warnings: list[str] = []
    relaxed: list[str] = []
    closed: list[str] = []
    for c in constraints:
        if c.json_schema is None and c.grammar is None and not c.regex_patterns:
            raise ConstraintCompileError("sets none of json_schema, grammar, regex_patterns", c.name)
        _check_sizes(c, limits)
        if c.json_schema is not None:
            grammar, matcher, schema_warnings, schema_relaxed, schema_closed = compile_schema(
                c.name, c.json_schema, limits, schema_mode, closed_objects
            )
            warnings.extend(schema_warnings)
            relaxed.extend(schema_relaxed)
            if not structural:  # only the enforced schema's objects are decoded closed
                closed.extend(schema_closed)
            if start_state(matcher) != (False, True):  # no JSON document is empty
                raise ConstraintCompileError(
                    "json_schema admits no JSON document as llguidance compiles it "
                    "(a $ref cycle without a base case?)",
                    c.name,
                )
            structural.append((f"{c.name}:json_schema", grammar, matcher))
        if c.grammar is not None:
            grammar = part_grammar(c.name, "grammar", c.grammar)
            matcher = check_grammar(c.name, "grammar", grammar, limits)
            if start_state(matcher) == (False, False):
                raise ConstraintCompileError("grammar admits no output at all", c.name)
            structural.append((f"{c.name}:grammar", grammar, matcher))
        for i, pattern in enumerate(c.regex_patterns):
            lexeme = regex_lexeme(c.name, i, pattern)
            check_grammar(
                c.name,
                f"regex_patterns[{i}] {pattern!r}",
                part_grammar(c.name, "regex", lexeme),
                limits,
            )
            regexes.append((f"{c.name}:regex[{i}]", lexeme))

    if structural:
        (label, grammar, matcher), rest = structural[0], structural[1:] + regexes
        enforced, validated_only = [label], [lab for lab, *_ in rest]
    elif regexes:
        lark = "start: ANANKE_RE\nANANKE_RE: " + " & ".join(lex for _, lex in regexes)
        grammar = llg.LLMatcher.grammar_from_lark(lark)
        matcher = check_grammar(None, "intersection of the regexes", grammar, limits)
        if start_state(matcher) == (False, False):
            raise ConstraintCompileError("no output can match all the regexes at once")
        enforced, validated_only = [lab for lab, _ in regexes], []
    else:
        grammar, enforced, validated_only = None, [], []
    if grammar is not None:
        _probe_first_step(matcher, enforced)

    return CompiledConstraints(
        hash=constraints_hash(constraints, schema_mode, closed_objects),
        grammar=grammar,
        enforced=tuple(enforced),
        validated_only=tuple(validated_only),
        compiled_at=int(time.time()),
        compile_time_ms=(time.perf_counter() - start) * 1000,
        constraint_names=tuple(c.name for c in constraints),
        warnings=tuple(warnings),
        schema_mode=schema_mode,
        relaxed=tuple(relaxed),
        closed_objects=closed_objects,
        closed=tuple(closed),
    )


def compile_constraints(
    constraints: list[PyConstraintIR],
    limits: CompileLimits | None = None,
    schema_mode: str = "strict",
    closed_objects: bool = True,
) -> CompiledConstraints:
    """Compile within `limits.time_budget_s`, or raise ConstraintCompileError.

    llguidance releases the GIL while it builds grammars, so the work runs on a helper thread (with
    a big stack, see ananke.threads) and the caller stops waiting at the budget. llguidance's own
    fuel limits bound the helper too.
    """
    limits = limits or CompileLimits()
    check_schema_mode("schema_mode", schema_mode)
    if not isinstance(constraints, (list, tuple)) or not all(
        isinstance(c, PyConstraintIR) for c in constraints
    ):
        raise ConstraintCompileError("constraints must be a list of PyConstraintIR")
    names = [c.name for c in constraints]
    if len(set(names)) != len(names):
        raise ConstraintCompileError(f"constraint names must be unique, got {names}")
    try:
        return call_with_big_stack(
            lambda: _compile(list(constraints), limits, schema_mode, closed_objects),
            limits.time_budget_s,
            "ananke-compile",
            low_priority=True,
        )
    except TimeoutError:
        raise ConstraintCompileError(
            f"compilation exceeded the time budget of {limits.time_budget_s:g} s (of CPU time)"
        ) from None
