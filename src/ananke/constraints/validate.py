"""Independent validation of an output against its constraints.

This never looks at how the text was decoded. JSON Schema: `json.loads` then the `jsonschema`
validator of the schema's draft (2020-12 by default) with format checking. Regex: full match
with the `regex` module (with a timeout, so a catastrophic pattern cannot hang us); JSON Schema's
`pattern` and `patternProperties` go through it too. Grammar: a
fresh llguidance matcher over single bytes, fed the text, must end in an accepting state.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import jsonschema
import llguidance as llg
import referencing.exceptions
import regex

from ananke.constraints.compiler import byte_tokenizer, parse_schema, part_grammar
from ananke.constraints.syntax import NotChecked, check_syntax, syntax_check_name
from ananke.errors import ConstraintCompileError
from ananke.threads import call_with_big_stack
from ananke.types import PyConstraintIR, PyValidationResult

REGEX_TIMEOUT_S = 2.0


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_json_schema(text: str, schema_text: str, name: str = "") -> str | None:
    """None when `text` is JSON valid under the schema, else the reason."""
    try:
        instance = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        return f"output is not valid JSON: {exc}"
    except RecursionError:
        raise NotChecked("the output is nested too deeply to read") from None
    try:
        validator = _validator(schema_text)
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    except ArithmeticError as exc:  # e.g. multipleOf 0.5 of an integer too large for a float
        raise NotChecked(f"a number in the output is too large to check ({exc})") from None
    except RecursionError:
        raise NotChecked("the output is nested too deeply to check") from None
    except jsonschema.exceptions.SchemaError as exc:
        raise NotChecked(f"the schema itself is invalid: {exc.message}") from None
    except referencing.exceptions.Unresolvable as exc:
        raise NotChecked(f"the schema has an unresolvable $ref: {exc}") from None
    except ConstraintCompileError as exc:
        raise NotChecked(exc.reason) from None
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"JSON Schema violation at '/{where}': {error.message}"


@functools.lru_cache(maxsize=256)
def _validator(schema_text: str):
    """The checked validator of the schema's own draft (cached: checking a schema costs ~1 ms).

    Formats are checked with every checker jsonschema has, not only the draft's own list: a
    draft-04 schema that says "iri" (defined from draft 7 on) means an IRI, and format assertion
    is optional in every draft, so checking more is allowed and never passes a bad value.
    """
    schema = parse_schema("", schema_text)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return with_timed_patterns(cls)(schema, format_checker=ALL_FORMATS)


@functools.cache  # one class per draft: `extend` builds a new class each call
def with_timed_patterns(cls):
    """The jsonschema validator class `cls` with `pattern` and `patternProperties` matched by _search."""
    return jsonschema.validators.extend(cls, {"pattern": _pattern, "patternProperties": _pattern_properties})


def _search(pattern: str, text: str) -> bool:
    """`re.search` as jsonschema does it, but with the `regex` module: it finishes the classic
    catastrophic patterns at once (`^(\\w+\\s?)*$` over 40 letters and a `!` holds `re`, and with it
    the GIL and every thread of the process, for hours) and stops the rest after REGEX_TIMEOUT_S."""
    try:
        return regex.search(pattern, text, timeout=REGEX_TIMEOUT_S) is not None
    except regex.error:  # a pattern only `re` reads: checked as jsonschema would
        return re.search(pattern, text) is not None
    except TimeoutError:
        raise NotChecked(f"pattern {pattern!r} took over {REGEX_TIMEOUT_S} s to check") from None


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator, patterns, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


ALL_FORMATS = jsonschema.FormatChecker()  # every format jsonschema (with format-nongpl) can check


def check_regex(text: str, pattern: str) -> str | None:
    try:
        matched = regex.fullmatch(pattern, text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        raise NotChecked(f"regex {pattern!r} took over {REGEX_TIMEOUT_S} s to check") from None
    except regex.error as exc:
        raise NotChecked(f"regex {pattern!r} does not compile: {exc}") from None
    return None if matched else f"output does not fully match regex {pattern!r}"


def check_grammar(text: str, grammar_text: str, name: str = "") -> str | None:
    try:
        grammar = part_grammar(name, "grammar", grammar_text)
    except ConstraintCompileError as exc:
        raise NotChecked(exc.reason) from None
    return call_with_big_stack(lambda: _run_grammar(text, grammar), name="ananke-validate")


def _run_grammar(text: str, grammar: str) -> str | None:
    matcher = llg.LLMatcher(byte_tokenizer(), grammar, log_level=0)
    if matcher.is_error():
        raise NotChecked(f"grammar does not compile: {matcher.get_error()}")
    data = text.encode()
    consumed = matcher.try_consume_tokens(list(data))
    if consumed < len(data):
        where = data[:consumed].decode(errors="replace")
        return (
            f"output leaves the grammar at byte {consumed} "
            f"(after {where[-40:]!r}, at {data[consumed : consumed + 20].decode(errors='replace')!r})"
        )
    if not matcher.is_accepting():
        return "output is an incomplete sentence of the grammar (ends too early)"
    return None


def check_constraint(text: str, constraint: PyConstraintIR) -> str | None:
    """None when every field of the constraint holds, else the reasons joined by '; '."""
    reasons = []
    if constraint.json_schema is not None:
        reasons.append(check_json_schema(text, constraint.json_schema, constraint.name))
    if constraint.grammar is not None:
        reasons.append(check_grammar(text, constraint.grammar, constraint.name))
    for pattern in constraint.regex_patterns:
        reasons.append(check_regex(text, pattern))
    failed = [r for r in reasons if r]
    return "; ".join(failed) if failed else None


def validate(
    text: str, constraints: list[PyConstraintIR], *, language: str | None = None, code: str | None = None
) -> PyValidationResult:
    """One verdict per constraint; a check that could not run is `not_checked`, never satisfied.

    With `language`, `code` (default: `text`) is also parsed with tree-sitter, reported as the
    entry `syntax:<language>` (see constraints/syntax.py); a language without a parser is
    `not_checked`.
    """
    satisfied: list[str] = []
    violated: list[str] = []
    not_checked: list[str] = []
    errors: dict[str, str] = {}
    checks = [(c.name, functools.partial(check_constraint, text, c)) for c in constraints]
    if language is not None:
        source = text if code is None else code
        checks.append((syntax_check_name(language), functools.partial(check_syntax, source, language)))
    for name, check in checks:
        try:
            reason = check()
        except NotChecked as exc:
            not_checked.append(name)
            errors[name] = f"not checked: {exc}"
            continue
        if reason is None:
            satisfied.append(name)
        else:
            violated.append(name)
            errors[name] = reason
    return PyValidationResult(
        all_satisfied=not violated and not not_checked,
        satisfied=satisfied,
        violated=violated,
        errors=errors,
        not_checked=not_checked,
    )
