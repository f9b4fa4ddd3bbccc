"""The shortest way to finish: bytes that take a grammar state to an accepted end.

Budget-aware decoding needs, at each step, how much output the shortest accepted completion from
the current grammar state takes. llguidance has no such query, so this searches for one with a
byte-level matcher (the 256-byte tokenizer of the compiler), which is cheap to copy and to mask
(about a microsecond each).

First depth first, from each state the child that looks closest to the end first: children whose
set of allowed bytes differs from their parent's or after which the grammar forces bytes
("progress": they left a repetition, like `@` in an e-mail address or `"` before a required
key), closing bytes (`}`, `]`, `)`, `"`) first among them, then the rest, content bytes (a, 0,
A) first among those. A path is dropped after k bytes without progress (wandering through string
content), with k = 1, then 64 with one content byte per such step (runs like `[a-f0-9]{32}`),
then 3, a sixth of the node budget each; then 1 and 64 again trying every allowed byte instead
of one per class (keeping one child per distinct outcome). When that finds nothing, best first:
the shortest path, a byte without progress counting 4 more, paths dropped after `stall` bytes
without progress.

Bytes the grammar forces are taken in one step (`compute_ff_bytes`). One byte stands for each
class of the allowed bytes (a-z, A-Z, 0-9, each other ASCII byte, UTF-8 leads, UTF-8
continuations), and where a state allows almost everything (string content, free text) only a
short list of bytes is tried. Where a class's byte chose something (keys `flag` and `id`: bytes
were forced after it, or other bytes allowed), the class's other bytes are tried when it led
nowhere. llguidance states cannot be compared, so two states count as the
same when they allow the same bytes, the text ends in the same 4 byte classes (inside
`[a-z]{2,}`, one letter and two letters differ by their suffix) and the last bytes the grammar
forced on the way are the same (the values of two keys differ by the key); a state seen before
is not entered again, which ends loops.

The search is bounded (`SearchLimits.nodes` states expanded; a state costs from a microsecond
to a millisecond for a new state of a large regex), so it takes at most a few milliseconds on
most grammars. The answer is a witness, not a proof of minimality: a real completion (the caller
checks it with its own matcher), usually close to the shortest. None means that nothing was
found within the bounds.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import llguidance as llg
import numpy as np


@dataclass(frozen=True)
class SearchLimits:
    nodes: int = 600  # states expanded
    seconds: float = 0.25  # a safety net: the node count bounds the work (a state costs 1-1000 µs)
    max_bytes: int = 1 << 16  # longest completion looked for
    suffix: int = 4  # byte classes of the text's end that tell states apart
    stall: int = 8  # a path that goes this many bytes without progress is dropped
    wide: int = 64  # a state allowing more bytes than this tries the short list only


def _byte_classes() -> np.ndarray:
    classes = np.arange(256, dtype=np.int16)
    for lo, hi in ((b"a", b"z"), (b"A", b"Z"), (b"0", b"9")):
        classes[lo[0] : hi[0] + 1] = lo[0]
    classes[0x80:0xC0] = 0x80  # UTF-8 continuation bytes
    classes[0xC0:0x100] = 0xC0  # UTF-8 lead bytes
    return classes


CLASSES = _byte_classes()
# Coarser, for telling states apart by the text's end: letters and digits alike (the allowed set
# already shows which of them a state takes), so a run of word characters is one pattern.
SUFFIX_CLASSES = CLASSES.copy()
SUFFIX_CLASSES[np.isin(CLASSES, list(b"aA0"))] = ord("a")
CLOSING = b'}])"'  # `"` last: where a key may start, it opens one
STALL_COST = 4  # best first: a byte that leaves the allowed set as it was counts as this many more
# Depth first, again and again: paths are dropped after this many bytes without progress.
# (every byte, bytes without progress, one byte per stalled step); 0 is no cheaper: where every byte changes
# the allowed set (a format's regex), it wanders too.
# Then the same with one child per behaviour of every allowed byte, not per class (`e` in
# `[a-z ]+` & `.*e.*` differs from the other letters), at several times the cost per state.
DESCENTS = ((False, 1, False), (False, 64, True), (False, 3, False), (True, 1, False), (True, 64, True))
# Tried in a state that allows almost every byte (content first among equals).
SHORT_LIST = np.frombuffer(b"a0A" + CLOSING + b"\n,.:;-@/_ '>", dtype=np.uint8)
_RANK = np.full(256, len(SHORT_LIST), dtype=np.int16)
_RANK[SHORT_LIST[::-1]] = np.arange(len(SHORT_LIST))[::-1]


def allowed_bytes(matcher: llg.LLMatcher) -> np.ndarray:
    """The bytes a byte-level matcher allows next (its mask, without the end token), sorted."""
    mask = np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8)
    return np.flatnonzero(np.unpackbits(mask, bitorder="little")[:256])


def _representatives(allowed: np.ndarray, wide: int, every: bool = False) -> list[int]:
    """The smallest allowed byte of each class (`every`: all allowed bytes), in SHORT_LIST's
    order first; a state allowing more than `wide` bytes gets the short list only."""
    if len(allowed) > wide:
        allowed = allowed[np.isin(allowed, SHORT_LIST)]
    if not every:
        _, first = np.unique(CLASSES[allowed], return_index=True)
        allowed = allowed[first]
    return [int(b) for b in allowed[np.argsort(_RANK[allowed], kind="stable")]]


_REGEX_LITERAL = re.compile(r"/((?:[^/\\\n]|\\.)+)/")  # a Lark grammar's /regex/ tokens
_NOT_LITERAL = re.compile(r"\\.|\[(?:[^\]\\]|\\.)*\]|\{[^}]*\}")  # escapes, classes, counts
MAX_WORDS = 32


@functools.lru_cache(maxsize=64)
def pattern_words(grammar: str) -> tuple[bytes, ...]:
    """Literal words (two or more letters or digits) of a grammar's regexes: JSON Schema
    `pattern`s and `patternProperties` names of a JSON-schema grammar, `/…/` tokens of a Lark
    one. In string content one byte per class cannot spell `deny` of `^allow|deny$`; the search
    tries such words whole there."""
    sources: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "pattern" and isinstance(item, str):
                    sources.append(item)
                elif key == "patternProperties" and isinstance(item, dict):
                    sources.extend(item)
                elif key == "lark_grammar" and isinstance(item, str):
                    sources.extend(_REGEX_LITERAL.findall(item))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    if grammar.startswith("{"):  # llguidance's JSON form (a JSON schema's grammar)
        with contextlib.suppress(ValueError):
            walk(json.loads(grammar))
    else:
        sources.extend(_REGEX_LITERAL.findall(grammar))
    literal = (_NOT_LITERAL.sub(" ", source) for source in sources)
    words = (word.encode() for text in literal for word in re.findall(r"[A-Za-z0-9]{2,}", text))
    return tuple(dict.fromkeys(words))[:MAX_WORDS]


@dataclass(eq=False)
class _Node:
    state: llg.LLMatcher
    path: bytes
    allowed: np.ndarray | None = None
    stall: int = 0  # bytes since the allowed set last changed
    landmark: bytes = b""  # the last bytes the grammar forced on the way (a key name, say)

    def allowed_now(self) -> np.ndarray:
        if self.allowed is None:
            self.allowed = allowed_bytes(self.state)
        return self.allowed


class _Search:
    every = False  # one child per distinct behaviour of each allowed byte, not per byte class

    def __init__(self, text_end: bytes, limits: SearchLimits, words: tuple[bytes, ...] = ()) -> None:
        self.text_end, self.limits, self.words = text_end, limits, words
        self.nodes = 0

    def key(self, node: _Node) -> tuple[bytes, tuple[int, ...], bytes]:
        end = (self.text_end + node.path)[-self.limits.suffix :]
        return node.allowed_now().tobytes(), tuple(int(SUFFIX_CLASSES[b]) for b in end), node.landmark

    def child(self, node: _Node, byte: int) -> _Node | None:
        return self.child_of(node, bytes([byte]))

    def child_of(self, node: _Node, text: bytes) -> _Node | None:
        """The node after `text` (a byte, or a word) and the bytes the grammar then forces."""
        state = node.state.deep_copy()
        if state.try_consume_tokens(list(text)) != len(text):
            return None
        step, landmark = text, node.landmark
        forced = state.compute_ff_bytes()
        if forced:
            if not state.consume_tokens(list(forced)):
                return None
            step, landmark = step + forced, forced[-16:]
        return _Node(state, node.path + step, landmark=landmark)

    def children(self, node: _Node) -> list[_Node]:
        """One child per byte class; in a narrow state, one per distinct behaviour instead (the
        bytes of a class that lead to different allowed sets: `e` in `[a-z]*e[a-z]*` & …)."""
        self.nodes += 1
        allowed = node.allowed_now()
        if not self.every or len(allowed) > self.limits.wide:
            children = [self.child(node, b) for b in _representatives(allowed, self.limits.wide)]
            if len(allowed) > self.limits.wide:  # string content: the patterns' words too
                children += [self.child_of(node, word) for word in self.words if word[0] in allowed]
            return [c for c in children if c is not None]
        out, behaviours = [], set()
        for byte in _representatives(allowed, self.limits.wide, every=True):
            child = self.child(node, byte)
            if child is None:
                continue
            behaviour = (CLASSES[byte], child.allowed_now().tobytes(), child.path[len(node.path) + 1 :])
            if behaviour not in behaviours:
                behaviours.add(behaviour)
                out.append(child)
        return out

    def closes(self, parent: _Node, child: _Node) -> bool:
        """A closing byte that closes something: in a narrow state (`}` after a value), or one
        after which fewer bytes are allowed (`"` ending a string). In string content, where
        almost every byte is allowed, `}` is content: the same bytes, or more, stay allowed."""
        if child.path[len(parent.path)] not in CLOSING:
            return False
        allowed = parent.allowed_now()
        return len(allowed) <= self.limits.wide or not np.isin(allowed, child.allowed_now()).all()

    def progress(self, node: _Node) -> list[_Node]:
        """The children, each with its stall count (0 when the allowed set changed)."""
        children = self.children(node)
        for child in children:
            self.count_stall(node, child)
        return children

    def count_stall(self, parent: _Node, child: _Node) -> None:
        """The child's stall count: 0 when it made progress, else one more than its parent's."""
        progress = (
            child.state.is_accepting()
            or child.allowed_now().tobytes() != parent.allowed_now().tobytes()
            or len(child.path) > len(parent.path) + 1  # the grammar forced bytes: moved on
            or self.closes(parent, child)  # `}` closing a map of any keys allows what `,` did
        )
        child.stall = 0 if progress else parent.stall + 1

    def descend(self, root: _Node, stall: int, deadline: float, runs: bool = False) -> bytes | None:
        """Depth first, progress first (closing bytes first among equals); paths stalling more
        than `stall` bytes are dropped. With `runs`, a stalled path goes on with one byte only
        (a run of content such as the 32 hex digits of `[a-f0-9]{32}`)."""
        seen: set = set()
        stack = [iter([root])]
        budget = self.nodes + self.limits.nodes // 6
        while stack and self.nodes < budget and time.perf_counter() < deadline:
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
                continue
            if node.state.is_accepting():
                return node.path
            key = (self.key(node), len(node.path) if runs else 0)  # runs: only loops of equal length
            if key in seen or node.state.is_stopped() or len(node.path) > self.limits.max_bytes:
                continue
            seen.add(key)
            children = self.progress(node)
            if runs:
                stalled = [c for c in children if c.stall > 0][:1]
                children = [c for c in children if c.stall == 0] + stalled
            fresh = [child for child in children if child.stall <= stall]
            # stable: otherwise in the order of _representatives (content bytes first)
            fresh.sort(key=lambda c: (c.stall > 0, c.stall > 0 or not self.closes(node, c)))
            stack.append(itertools.chain(fresh, self.rest_of_classes(node, children, stall)))
        return None

    def rest_of_classes(self, node: _Node, children: list[_Node], stall: int) -> Iterator[_Node]:
        """After every child of `node` failed: in a narrow state, the other bytes of each class
        whose representative chose something (the grammar forced bytes after it, or allowed
        other bytes than before: a choice of keys `f`, `i`, `m`, `n` where the key `f` leads
        nowhere) — not of content classes, where the other letters behave alike. Made lazily, so
        a path that succeeds never pays for them."""
        allowed = node.allowed_now()
        if self.every or len(allowed) > self.limits.wide:
            return
        start = len(node.path)
        choosing = {
            int(CLASSES[child.path[start]])
            for child in children
            if len(child.path) > start + 1 or not np.isin(allowed, child.allowed_now()).all()
        }
        tried = {child.path[start] for child in children}
        for byte in (int(b) for b in allowed if CLASSES[b] in choosing and int(b) not in tried):
            child = self.child(node, byte)
            if child is None:
                continue
            self.count_stall(node, child)
            if child.stall <= stall:
                yield child

    def best_first(self, root: _Node, deadline: float) -> bytes | None:
        """The shortest path first, each byte without progress counting STALL_COST more."""
        tie = itertools.count()
        heap = [(0, next(tie), root)]
        seen: set = set()
        while heap and self.nodes < self.limits.nodes and time.perf_counter() < deadline:
            _, _, node = heapq.heappop(heap)
            if node.state.is_accepting():
                return node.path
            key = self.key(node)
            if key in seen or node.state.is_stopped() or len(node.path) > self.limits.max_bytes:
                continue
            seen.add(key)
            for child in self.progress(node):
                if child.stall <= self.limits.stall:
                    closing = self.closes(node, child)
                    cost = len(child.path) + STALL_COST * child.stall
                    heapq.heappush(heap, (2 * cost - closing, next(tie), child))
        return None


def shortest_completion(
    matcher: llg.LLMatcher,
    text_end: bytes = b"",
    limits: SearchLimits | None = None,
    words: tuple[bytes, ...] = (),
) -> bytes | None:
    """Bytes after which the byte-level `matcher` accepts (b"" when it already does).

    `text_end` is the end of the text consumed so far (a few bytes), used to tell states apart;
    `words` are tried whole in string content (`pattern_words` of the grammar). The matcher is
    left untouched. None: nothing found within `limits`.
    """
    limits = limits or SearchLimits()
    if matcher.is_error():
        return None
    if matcher.is_accepting():
        return b""
    state = matcher.deep_copy()
    forced = state.compute_ff_bytes()
    if forced and not state.consume_tokens(list(forced)):
        return None
    search, start = _Search(text_end, limits, words), time.perf_counter()
    for every, stall, runs in DESCENTS:  # cheap first: most ends need a few content bytes at most
        search.every = every
        found = search.descend(_Node(state, forced), stall, start + limits.seconds * 0.7, runs)
        if found is not None:
            return found
    search.every = False
    return search.best_first(_Node(state, forced), start + limits.seconds)
