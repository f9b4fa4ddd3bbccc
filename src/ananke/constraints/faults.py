"""Whose fault is an llguidance error: the constraint's, or the server's.

llguidance refuses work beyond its limits (lexer fuel and states, Earley items, grammar size) at
any point: building a grammar, computing the first mask, or consuming a token mid-decode. Such a
refusal is the caller's constraint at fault — a 4xx naming the limit, never retried — whereas
anything else llguidance reports after a grammar compiled is the server's (5xx).

`first_step_error` probes a fresh byte-level matcher one byte deep, where most of these limits
trip (a row of 20,000 alternatives is built on the first byte), so the compiler refuses such a
constraint before it takes a decoding slot.
"""

from __future__ import annotations

import re

import llguidance as llg
import numpy as np

from ananke.errors import AnankeError, BackendError, ConstraintCompileError

# (llguidance's words, the limit as a user can act on it, a hint to simplify)
_LIMITS: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"too many expressions constructed"),
        "the lexer's work limit (lexer fuel: too many regex derivatives)",
        "use smaller repetition counts than e.g. a{1000000}, avoid nesting counted repetitions "
        "like ((a{100}){100}){100}, or use + and * instead of exact counts",
    ),
    (
        re.compile(r"too many states: (\d+) >= (\d+)"),
        "the lexer's state limit ({2} states, max_lexer_states)",
        "make the regexes smaller: fewer alternatives, smaller counted repetitions",
    ),
    (
        re.compile(r"Current row has (\d+) items; max is (\d+)"),
        "the parser's limit of {2} Earley items per step ({1} needed, max_items_in_row)",
        'thousands of alternatives in one rule (start: "w0" | … | "w19999") are better one '
        "regex such as /w[0-9]+/ or rules that share prefixes, an object with thousands of "
        "optional properties is better split, and right recursion better left recursion",
    ),
    (
        re.compile(r"Too many items \(limit (\d+)"),
        "the parser's limit of {1} Earley items per token mask (step_max_items)",
        "avoid single-byte or very short lexemes repeated many times, and huge alternations",
    ),
    (
        re.compile(r"fuel exhausted when checking relevance|initial lexer configuration \(grammar\) too big"),
        "the lexer's work limit for building the grammar (initial_lexer_fuel)",
        "make the regexes (or patterns, enums) smaller or fewer",
    ),
    (
        re.compile(r"grammar size \(number of symbols\) too big \(limit for this grammar: (\d+)"),
        "the grammar size limit ({1} symbols, max_grammar_size)",
        "split the constraint, or use fewer rules and alternatives",
    ),
    (
        re.compile(r"DNF too large|schema too large|Schema intersection stack level exceeded"),
        "llguidance's size limit for JSON schemas",
        "use fewer or smaller allOf/anyOf branches and $ref chains",
    ),
]


def constraint_fault(error: str) -> str | None:
    """What the caller should read when llguidance's `error` is a limit the constraint exceeded;
    None when it is not the constraint's fault."""
    for pattern, limit, hint in _LIMITS:
        match = pattern.search(error)
        if match:
            named = limit.format(*[match.group(0), *match.groups()])
            return f"the constraint exceeds {named}; simplify it: {hint}"
    return None


def first_step_error(matcher: llg.LLMatcher) -> str | None:
    """llguidance's error within the first byte of output of a fresh byte-level matcher, or None.

    Every allowed first byte is consumed and the next mask computed, then rolled back: a parser
    row or a lexer state that is too large appears right there. Without an error the matcher is
    left as it was (with one, it stays in error).
    """
    mask = np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8)
    if matcher.is_error():
        return matcher.get_error()
    first_bytes = np.flatnonzero(np.unpackbits(mask, bitorder="little")[:256])
    for byte in first_bytes.tolist():
        if matcher.try_consume_tokens([byte]) != 1:
            if matcher.is_error():
                return matcher.get_error()
            continue  # allowed by the mask yet refused: a lexeme that cannot go on; not a limit
        matcher.compute_bitmask()
        error = matcher.get_error() if matcher.is_error() else None
        if error is not None:
            return error
        matcher.rollback(1)
    return None


def decoding_error(error: str) -> AnankeError:
    """The error for a request whose matcher failed mid-decode with llguidance's `error`."""
    fault = constraint_fault(error)
    if fault is not None:
        return ConstraintCompileError(f"while decoding, {fault}")
    if "NoExtensionBias" in error:  # an empty mask: nothing may follow, yet the output is not complete
        return ConstraintCompileError(
            "while decoding, the constraint reached a dead end: no token can continue the output "
            'and it is not complete (a rule that derives no string, such as x: x "c"?)'
        )
    return BackendError(f"the token matcher failed: {error.replace('<non-verbose/>', '').strip()}")
