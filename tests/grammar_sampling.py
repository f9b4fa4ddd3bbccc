"""Random sentences of a grammar, drawn with a real llguidance matcher over single bytes.

At each step the matcher's mask says which bytes (and whether the end) may come next; one is
picked at random, so every sample is a sentence the grammar (as llguidance runs it) accepts.
Closing bytes, ASCII letters and other bytes (punctuation, non-ASCII) are picked as separate
classes, so structure is not drowned out by long names and strings; the end is taken with
probability `stop` whenever it is allowed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import llguidance as llg

from ananke.constraints.compiler import byte_tokenizer, part_grammar

EOS = 256
# Bytes that end a lexeme or a line: picking them often keeps samples short and structured.
CLOSERS = set(b"\n\"')]};")


def allowed_bytes(matcher: llg.LLMatcher) -> list[int]:
    mask = matcher.compute_bitmask()
    return [i for i in range(EOS + 1) if mask[i // 8] >> (i % 8) & 1]


def sample(
    grammar_text: str,
    seed: int,
    max_bytes: int = 600,
    stop: float = 0.35,
    hints: Sequence[str] = (),
    hint_rate: float = 0.7,
) -> str | None:
    """One random sentence, or None when the walk ran past `max_bytes` (then it is dropped).

    `hints` are words (say "if ", "for ") tried at line starts (with probability `hint_rate`)
    when the matcher takes one whole: they steer the walk into structure that byte-by-byte
    choices rarely reach.
    """
    rng = random.Random(seed)
    encoded_hints = [h.encode() for h in hints]
    matcher = llg.LLMatcher(byte_tokenizer(), part_grammar("g", "grammar", grammar_text), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    out = bytearray()
    while len(out) < max_bytes:
        if encoded_hints and out.endswith(b"\n") and rng.random() < hint_rate:
            hint = next((h for h in rng.sample(encoded_hints, len(encoded_hints)) if fits(matcher, h)), None)
            if hint is not None:
                matcher.consume_tokens(list(hint))
                out += hint
                continue
        allowed = allowed_bytes(matcher)
        assert allowed, f"the grammar is stuck after {bytes(out)!r}"
        if EOS in allowed and (len(allowed) == 1 or rng.random() < stop):
            return out.decode()
        choices = [b for b in allowed if b != EOS]
        closers = [b for b in choices if b in CLOSERS]
        ascii_words = [b for b in choices if chr(b).isalnum() or b == ord("_")]
        other = [b for b in choices if b not in closers and b not in ascii_words]
        pools = [p for p in (closers, ascii_words, other) if p]
        weights = [{id(closers): 4, id(ascii_words): 4, id(other): 2}[id(p)] for p in pools]
        pool = rng.choices(pools, weights)[0]
        byte = rng.choice(pool)
        assert matcher.consume_token(byte), f"mask allowed {byte} but the matcher refused it"
        out.append(byte)
    return None


def fits(matcher: llg.LLMatcher, data: bytes) -> bool:
    return matcher.deep_copy().try_consume_tokens(list(data)) == len(data)


def samples(grammar_text: str, count: int, **kw) -> list[str]:
    found = [sample(grammar_text, seed, **kw) for seed in range(count)]
    return [s for s in found if s is not None]
