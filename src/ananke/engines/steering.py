"""What the engine does between the grammar mask and the next token.

* `SamplingParams` and `sample`: temperature, top-k, top-p, min-p and the repetition, frequency
  and presence penalties, applied to the masked logits — a token the grammar forbids has -inf
  and stays out whatever the settings.
* `Budget`: budget-aware completion. It knows a short accepted completion from the current
  grammar state (ananke.constraints.completion, on a byte-level copy of the matcher), tells the
  engine whether a sampled token still leaves room to finish within `max_tokens`, and gives the
  completion's tokens when the engine must close the output.
* `repeating` and `loop_exit`: the loop guard's test for an output that repeats the same run of
  tokens, and the part of the completion that leads out of the loop.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import llguidance as llg
import numpy as np

from ananke.constraints.compiler import CompileLimits, byte_tokenizer
from ananke.constraints.completion import SearchLimits, allowed_bytes, pattern_words, shortest_completion

MIN_TEMPERATURE = 1e-4  # below this, sampling is greedy (the distribution is one-hot anyway)


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    min_p: float = 0.0
    repetition_penalty: float = 1.0  # > 1 makes tokens already in the output less likely
    frequency_penalty: float = 0.0  # subtracted once per earlier occurrence
    presence_penalty: float = 0.0  # subtracted once if the token occurred at all


def penalise(logits: np.ndarray, params: SamplingParams, counts: Counter) -> None:
    """The penalties, in place, on the tokens already in the output (as vLLM applies them)."""
    if not counts or (
        params.repetition_penalty == 1.0 and params.frequency_penalty == 0 and params.presence_penalty == 0
    ):
        return
    ids = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    n = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
    values = logits[ids]
    if params.repetition_penalty != 1.0:
        values = np.where(values > 0, values / params.repetition_penalty, values * params.repetition_penalty)
    values = values - params.frequency_penalty * n - params.presence_penalty
    logits[ids] = np.where(np.isfinite(logits[ids]), values, logits[ids])  # -inf stays -inf


def sample(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """One token from masked, penalised logits (-inf where forbidden)."""
    if params.temperature < MIN_TEMPERATURE:  # 0, or so small that dividing overflows
        return int(np.argmax(logits))
    candidates = np.flatnonzero(np.isfinite(logits))
    if len(candidates) == 0:
        return int(np.argmax(logits))
    scores = logits[candidates].astype(np.float64)
    if 0 < params.top_k < len(candidates):
        keep = np.argpartition(-scores, params.top_k - 1)[: params.top_k]
        candidates, scores = candidates[keep], scores[keep]
    probs = np.exp((scores - scores.max()) / params.temperature)
    probs /= probs.sum()
    if params.min_p > 0:
        keep = probs >= params.min_p * probs.max()
        candidates, probs = candidates[keep], probs[keep] / probs[keep].sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        cut = int(np.searchsorted(cumulative, params.top_p)) + 1  # the smallest set reaching top_p
        order = order[:cut]
        candidates, probs = candidates[order], probs[order] / probs[order].sum()
    cdf = np.cumsum(probs)
    choice = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return int(candidates[min(choice, len(candidates) - 1)])


# ---------------------------------------------------------------- loop guard

LOOP_MIN_REPEATS = 3  # a run seen this many times in a row ...
LOOP_MIN_TOKENS = 12  # ... covering at least this many tokens
LOOP_MAX_PERIOD = 32


def repeating(tokens: list[int], since: int = 0) -> int:
    """The period of a run of tokens repeated at the end of `tokens`, or 0.

    A loop is the same run of p tokens (1 <= p <= 32) at least 3 times in a row at the end,
    covering at least 12 tokens, all after index `since` (the last intervention).
    """
    tail = tokens[since:]
    for period in range(1, LOOP_MAX_PERIOD + 1):
        repeats = max(LOOP_MIN_REPEATS, -(-LOOP_MIN_TOKENS // period))
        span = period * repeats
        if span > len(tail):
            break
        block = tail[-period:]
        if all(
            tail[-span + i * period : len(tail) - span + (i + 1) * period] == block for i in range(repeats)
        ):
            return period
    return 0


def loop_exit(completion: bytes, in_string: bool) -> bytes:
    """The part of a completion that leaves a loop: up to the first `"` for a loop inside a
    string, else up to the first `]`, `}` or `)` (a loop over items); all of it when none."""
    ends = b'"' if in_string else b"]})"
    cut = min((i for i, byte in enumerate(completion) if byte in ends), default=len(completion) - 1)
    return completion[: cut + 1]


# ---------------------------------------------------------------- budget

# Check every sampled token once the remaining budget is within this many tokens of the shortest
# completion; before that, search the completion again every REFRESH_EVERY tokens, or every
# eighth of the slack beyond the window when that is more (far from the cap the need rarely
# grows by seven eighths of the slack in an eighth of it), and less often while searches find
# nothing.
BUDGET_WINDOW = 64
REFRESH_EVERY = 4


@dataclass
class BudgetStats:
    searches: int = 0
    search_us: float = 0.0
    steered: int = 0  # sampled tokens refused because no completion would fit after them


@dataclass(eq=False)
class Budget:
    """Budget-aware completion for one sequence (scheduler thread only).

    It mirrors the sequence's grammar state in a byte-level matcher and keeps a witness: bytes
    after which the grammar accepts, found by `shortest_completion`. The last witness is tried
    first after each token (more string content leaves the same ending valid: a check of a few
    microseconds instead of a search), and every witness is checked against the mirror before it
    is used, so a wrong guess costs a search, never an illegal token.
    """

    grammar: str
    tokenize: object  # bytes -> list[int] in the model's vocabulary
    limits: SearchLimits = field(default_factory=SearchLimits)
    stats: BudgetStats = field(default_factory=BudgetStats)

    def __post_init__(self) -> None:
        self.mirror = llg.LLMatcher(byte_tokenizer(), self.grammar, log_level=0, limits=_PARSER_LIMITS)
        self.words = pattern_words(self.grammar)
        self.text_end = b""
        self.witness: bytes | None = None  # a completion from the current state, when known
        self.need: int | None = None  # its length in model tokens
        self.fresh = False  # whether witness/need describe the current state
        self.since_refresh = 0  # tokens since the last search from a current state
        self.refresh_gap = 0  # tokens between searches (doubles while searches find nothing)
        self._failed: set[tuple[bytes, bytes]] = set()

    def _search(self, text_end: bytes) -> bytes | None:
        """shortest_completion from the mirror's state; a state that looks like one where a
        search already failed (same allowed bytes, same ending) is not searched again."""
        started = time.perf_counter()
        looks = (allowed_bytes(self.mirror).tobytes(), text_end[-4:])
        found = (
            None
            if looks in self._failed
            else shortest_completion(self.mirror, text_end[-8:], self.limits, self.words)
        )
        if found is None:
            self._failed.add(looks)
        self.stats.searches += 1
        self.stats.search_us += (time.perf_counter() - started) * 1e6
        return found

    def _tokens(self, completion: bytes | None) -> int | None:
        return None if completion is None else len(self.tokenize(completion))

    def refresh(self) -> int | None:
        """The witness for the current state (searched unless already known); its token count."""
        if not self.fresh:
            if self.witness is None or not self._completes(self.witness):
                self.witness = self._search(self.text_end)
            self.need, self.fresh, self.since_refresh = self._tokens(self.witness), True, 0
            self.refresh_gap = REFRESH_EVERY if self.need is not None else min(2 * self.refresh_gap + 1, 64)
        return self.need

    def need_after(self, piece: bytes) -> tuple[int | None, bytes | None]:
        """(tokens, witness) of a completion after `piece` from the current state, or (None, None)."""
        if self.fresh and self.witness is not None and self.witness.startswith(piece):
            rest = self.witness[len(piece) :]
            return self._tokens(rest), rest
        taken = self.mirror.try_consume_tokens(list(piece))
        try:
            if taken != len(piece):
                return None, None
            if self.witness is not None and self._completes(self.witness):
                found = self.witness  # e.g. more string content: the same ending still works
            else:
                found = self._search(self.text_end + piece)
            return self._tokens(found), found
        finally:
            self.mirror.rollback(taken)

    def _completes(self, witness: bytes) -> bool:
        """Whether `witness` takes the mirror's current state to an accepted end (checked, undone)."""
        taken = self.mirror.try_consume_tokens(list(witness))
        accepted = taken == len(witness) and self.mirror.is_accepting()
        self.mirror.rollback(taken)
        return accepted

    def advance(self, piece: bytes, witness: bytes | None = None) -> None:
        """The sequence took `piece`; `witness`, when given, is known to complete from there."""
        if piece:
            self.mirror.consume_tokens(list(piece))
            self.text_end = (self.text_end + piece)[-8:]
        if witness is not None:
            self.witness, self.need, self.fresh = witness, self._tokens(witness), True
        elif self.fresh and self.witness is not None and self.witness.startswith(piece):
            self.witness = self.witness[len(piece) :]
            self.need = self._tokens(self.witness)
        elif piece:
            self.fresh = False
        self.since_refresh += 1

    def tight(self, remaining: int) -> bool:
        """Whether the next token must be checked: the budget is close to the known need."""
        if not self.fresh and self.since_refresh >= self.refresh_gap:
            self.refresh()
            if self.need is not None:
                self.refresh_gap = max(REFRESH_EVERY, (remaining - self.need - BUDGET_WINDOW) // 8)
        return self.need is not None and remaining <= self.need + BUDGET_WINDOW

    def closing_tokens(self) -> list[int] | None:
        """The model tokens of the current witness (searched now if needed)."""
        self.refresh()
        return None if self.witness is None else self.tokenize(self.witness)

    def closing_piece(self) -> bytes | None:
        self.refresh()
        return self.witness


_PARSER_LIMITS = CompileLimits().parser_limits()


# The search before decoding runs once per grammar (cached), off the decoding thread: the node
# count decides, with a time net loose enough that a loaded machine does not turn a found answer
# into "none found" (the refusal of a max_tokens too small would then depend on the load).
START_SEARCH = SearchLimits(seconds=2.0)


def start_need(grammar: str, tokenize, limits: SearchLimits = START_SEARCH) -> tuple[int, bytes] | None:
    """(tokens, bytes) of the shortest complete output found for a fresh grammar, or None."""
    mirror = llg.LLMatcher(byte_tokenizer(), grammar, log_level=0, limits=_PARSER_LIMITS)
    if mirror.is_error():
        return None
    found = shortest_completion(mirror, b"", limits, pattern_words(grammar))
    return None if found is None else (len(tokenize(found)), found)


__all__ = [
    "MIN_TEMPERATURE",
    "Budget",
    "SamplingParams",
    "allowed_bytes",
    "loop_exit",
    "penalise",
    "repeating",
    "sample",
    "start_need",
]
