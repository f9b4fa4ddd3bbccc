"""CPU engine: llama.cpp decoding with llguidance token masks, many sequences in one context.

`LlamaCppEngine` (at the end) is the Engine (engines/base.py) the service hosts and the `local`
backend calls: it renders the prompt with the GGUF's chat template and runs a job on the
`LlamaCppRunner`, shared by every engine over the same model file in the process.

The runner: one scheduler thread owns the llama.cpp context. Each step it puts every active sequence's
pending tokens (a prompt chunk, or the last sampled token plus any fast-forwarded ones) into one
batch and calls `llama_decode` once. While the forward pass runs (ctypes releases the GIL), a
helper thread computes the next token masks: a matcher's state after its pending tokens is
already known, so the mask does not wait for the logits. Then each sequence samples from its
masked logits, and llguidance's forced tokens are queued for the next batch.

Requests beyond the slot count wait in a FIFO queue. A cancelled job leaves at the next step
and its KV cache is freed. Per-job grammar work — the matcher over the model's vocabulary, its
first mask, the shortest output and the budget's byte-level mirror — is done by `submit`, on the
caller's thread, so a large constraint never stalls the sequences already decoding. A matcher
that trips an llguidance limit fails its own request with a 4xx (constraints/faults.py).

Constrained sequences finish within their budget (engines/steering.py): near the end of
`max_tokens` a sampled token is kept only if a completion still fits after it (else the next
choice is tried), and when none fits the shortest completion found is forced. A request whose
budget cannot hold the shortest output is refused at `submit`. A loop guard steers an output
that keeps repeating the same run of tokens out of it: it forces the completion up to the end of
the string or array it loops in.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import llguidance as llg
import numpy as np

from ananke.config import env_int
from ananke.constraints.compiler import CompiledConstraints, CompileLimits
from ananke.constraints.faults import constraint_fault, decoding_error
from ananke.engines.base import GenerationResult
from ananke.engines.model import (
    LoadedModel,
    available_cores,
    default_model_path,
    llama_cpp_module,
    load_model,
    load_tokenizer,
)
from ananke.engines.steering import (
    Budget,
    SamplingParams,
    loop_exit,
    penalise,
    repeating,
    sample,
    start_need,
)
from ananke.errors import BackendError, ConfigurationError, ConstraintCompileError, InvalidRequestError
from ananke.prompting import build_messages
from ananke.threads import big_stacks, call_with_big_stack, set_decoding, start_big_stack_thread
from ananke.types import SAMPLING_FIELDS, PyGenerationRequest

log = logging.getLogger(__name__)

FIT_TRIES = 4  # sampled tokens tried per step before the completion is forced


@dataclass(frozen=True)
class EngineSettings:
    slots: int = 4  # sequences decoded together
    ctx_per_slot: int = 4096  # tokens of context each sequence may use (prompt + output)
    n_batch: int = 512  # most tokens in one llama_decode
    threads: int = field(default_factory=available_cores)


@dataclass
class JobResult:
    tokens: list[int]
    text: str
    finish_reason: str
    prompt_tokens: int
    cached_prompt_tokens: int
    forced_tokens: int
    mask_times_us: list[float]
    total_time_ms: float  # from admission to the end: prompt processing + decoding
    first_token_ms: float  # from admission to the first sampled token (prompt processing)
    budget_closed: bool = False  # the end was forced: the shortest completion, to fit max_tokens
    closing_tokens: int = 0  # tokens that forced ending took
    budget_steered: int = 0  # sampled tokens refused because no completion fitted after them
    loop_breaks: int = 0  # repeating outputs the loop guard closed
    search_us: float = 0.0  # time spent looking for completions (apart from mask_times_us)


@dataclass(eq=False)
class Job:
    """One generation. `on_done(result, error)` and `on_text(delta)` run on the scheduler thread."""

    prompt_tokens: list[int]
    grammar: str | None
    max_tokens: int
    sampling: SamplingParams
    seed: int | None
    on_done: Callable[[JobResult | None, BaseException | None], None]
    on_text: Callable[[str], None] | None = None
    loop_guard: bool = True
    cancelled: threading.Event = field(default_factory=threading.Event)
    start: tuple[int, bytes] | None = None  # the shortest output found (tokens, bytes); by submit
    prepared: _Prepared | None = None  # the grammar's per-job state; by submit


@dataclass(eq=False)
class _Prepared:
    """A job's grammar state, built by `submit` before the job is queued."""

    matcher: llg.LLMatcher
    first_mask: np.ndarray  # the fresh matcher's mask, computed while preparing
    first_mask_us: float  # and its time, counted with the other masks
    budget: Budget


@dataclass(eq=False)
class _Seq:
    """Scheduler-side state of a running job."""

    job: Job
    seq_id: int
    matcher: llg.LLMatcher | None
    rng: np.random.Generator
    pending: list[int]  # tokens to feed at the next decode
    n_past: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV was reused from the slot's previous job
    output: list[int] = field(default_factory=list)
    forced: int = 0
    mask_times_us: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    budget: Budget | None = None
    ready_mask: tuple[np.ndarray, float] | None = None  # the first mask and its µs, from submit
    counts: Counter = field(default_factory=Counter)  # output tokens, for the penalties
    budget_closed: bool = False
    closing_tokens: int = 0
    loop_breaks: int = 0
    last_intervention: int = 0  # output length at the last forced ending or loop break
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )


class LlamaCppRunner:
    """Continuous batching over one llama.cpp context. Thread-safe `submit`."""

    def __init__(self, model_path: str, settings: EngineSettings | None = None) -> None:
        self.settings = settings or EngineSettings()
        self.llama = llama_cpp_module()
        self.model: LoadedModel = load_model(model_path)
        self.tokenizer = load_tokenizer(model_path, self.model)
        self.ctx_per_slot = min(self.settings.ctx_per_slot, self.model.n_ctx_train)
        self._ctx = self._new_context()
        self._memory = self.llama.llama_get_memory(self._ctx)
        self._batch = self.llama.llama_batch_init(self.settings.n_batch, 0, 1)
        self._limits = CompileLimits().parser_limits()  # the same caps as compilation
        self._words = (self.model.n_vocab + 31) // 32
        self._masks = np.zeros((self.settings.slots, self._words), dtype=np.int32)
        self._queue: queue.Queue[Job] = queue.Queue()
        self._wake = threading.Event()
        self._forget = threading.Event()  # set by forget_prompts, handled by the scheduler thread
        self._mask_pool = ThreadPoolExecutor(1, thread_name_prefix="ananke-mask")
        with big_stacks():  # its one worker starts now, with a big stack (see ananke.threads)
            self._mask_pool.submit(int).result()
        self._start_needs: dict[str, tuple[int, bytes] | None] = {}
        self._start_lock = threading.Lock()
        self._byte_tokens = self._single_byte_tokens()
        self._free_seq_ids = list(range(self.settings.slots))
        # Tokens whose KV each slot still holds: a new prompt reuses its longest common prefix
        # (the system message, a repeated request), so only the rest is processed again.
        self._slot_tokens: list[list[int]] = [[] for _ in range(self.settings.slots)]
        self._active: list[_Seq] = []
        self._thread = start_big_stack_thread(self._run, "ananke-llamacpp")

    def _single_byte_tokens(self) -> dict[int, int]:
        """byte -> the token of that one byte, where the vocabulary has one (byte-level BPE: all)."""
        out = {}
        for byte in range(256):
            tokens = self.tokenizer.tokenize_bytes(bytes([byte]))
            if len(tokens) == 1:
                out[byte] = tokens[0]
        return out

    def _new_context(self):
        params = self.llama.llama_context_default_params()
        params.n_ctx = self.ctx_per_slot * self.settings.slots
        params.n_batch = self.settings.n_batch
        params.n_ubatch = self.settings.n_batch
        params.n_seq_max = self.settings.slots
        params.n_threads = self.settings.threads
        params.n_threads_batch = self.settings.threads
        params.no_perf = True
        # One KV pool for all sequences: measured 1.2x the aggregate throughput of per-sequence
        # streams with 4 concurrent requests on 2 cores (`ananke bench decode`).
        params.kv_unified = True
        ctx = self.llama.llama_init_from_model(self.model.model, params)
        if not ctx:
            raise BackendError("llama.cpp could not create a context (out of memory?)")
        return ctx

    # ------------------------------------------------------------------ public

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def check_fits(self, prompt_tokens: int, max_tokens: int) -> None:
        if prompt_tokens + max_tokens > self.ctx_per_slot:
            raise InvalidRequestError(
                f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the "
                f"{self.ctx_per_slot}-token context of {self.model.name}; shorten the prompt "
                "or lower max_tokens"
            )

    def forget_prompts(self) -> None:
        """Drop the prompts cached in idle slots before the next admission, so the next request
        starts cold (benchmarks that compare tools; KV memory belongs to the scheduler thread)."""
        self._forget.set()
        self._wake.set()

    def tokenize_bytes(self, data: bytes) -> list[int]:
        return self.tokenizer.tokenize_bytes(data)

    def shortest_output(self, grammar: str) -> tuple[int, bytes] | None:
        """(tokens, bytes) of the shortest complete output found for `grammar`; cached."""
        with self._start_lock:
            if grammar in self._start_needs:
                self._start_needs[grammar] = self._start_needs.pop(grammar)  # most recent last
                return self._start_needs[grammar]
        found = start_need(grammar, self.tokenize_bytes)
        with self._start_lock:
            self._start_needs[grammar] = found
            while len(self._start_needs) > 256:
                del self._start_needs[next(iter(self._start_needs))]
        return found

    def submit(self, job: Job) -> None:
        """Prepare and queue a job; InvalidRequestError when it cannot fit, ConstraintCompileError
        when its grammar trips a limit over the model's vocabulary. Blocking (ms, up to the compile
        time budget for a huge grammar): call it off the event loop, never on the scheduler."""
        self.check_fits(len(job.prompt_tokens), job.max_tokens)
        if not job.prompt_tokens:
            raise InvalidRequestError("the prompt tokenised to nothing")
        if job.grammar is not None:
            budget_s = CompileLimits().time_budget_s
            try:  # llguidance recurses over deep grammars: a big stack, as for compiling
                call_with_big_stack(lambda: self._prepare(job), budget_s, "ananke-prepare")
            except TimeoutError:
                raise ConstraintCompileError(
                    f"preparing the constraint for {self.model.name}'s vocabulary exceeded the time "
                    f"budget of {budget_s:g} s"
                ) from None
        self._queue.put(job)
        self._wake.set()

    def _prepare(self, job: Job) -> None:
        """The job's matcher and first mask, its shortest output and budget (see submit)."""
        assert job.grammar is not None
        matcher = self._new_matcher(job.grammar)
        first_mask = np.zeros(self._words, dtype=np.int32)
        t0 = time.perf_counter()
        if not matcher.is_error():
            matcher.unsafe_compute_mask_ptr(first_mask.ctypes.data, first_mask.nbytes)
        first_mask_us = (time.perf_counter() - t0) * 1e6
        if matcher.is_error():  # over the model's vocabulary, beyond what compiling checked
            error = matcher.get_error()
            raise ConstraintCompileError(
                constraint_fault(error) or error.replace("<non-verbose/>", "").strip()
            )
        job.start = self.shortest_output(job.grammar)
        if job.start is not None and job.start[0] > job.max_tokens:
            tokens, text = job.start
            shown = text.decode("utf-8", errors="replace")
            shown = shown if len(shown) <= 120 else shown[:117] + "..."
            raise InvalidRequestError(
                f"max_tokens={job.max_tokens} cannot hold a complete output: the shortest one "
                f"found for this constraint takes {tokens} tokens ({shown!r}); raise max_tokens "
                f"to at least {tokens}"
            )
        budget = Budget(job.grammar, self.tokenize_bytes)
        if job.start is not None:
            budget.advance(b"", job.start[1])
        job.prepared = _Prepared(matcher, first_mask, first_mask_us, budget)

    def _new_matcher(self, grammar: str) -> llg.LLMatcher:
        """A matcher over the model's vocabulary (a seam: tests slow it down to watch the scheduler)."""
        return llg.LLMatcher(self.tokenizer, grammar, log_level=0, limits=self._limits)

    # ------------------------------------------------------------------ scheduler

    def _run(self) -> None:
        while True:
            if not self._active and self._queue.empty():
                set_decoding(self, False)
                self._wake.wait()
                self._wake.clear()
                set_decoding(self, True)
            try:
                if self._forget.is_set():
                    self._forget.clear()
                    for seq_id in self._free_seq_ids:
                        self._clear_slot(seq_id)
                self._admit()
                self._drop_cancelled()
                if self._active:
                    self._step()
            except Exception as exc:  # never let the scheduler die: fail what is running
                log.exception("engine step failed")
                for seq in list(self._active):
                    self._finish(seq, None, BackendError(f"inference failed: {exc}"))

    def _admit(self) -> None:
        while self._free_seq_ids:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job.cancelled.is_set():
                continue
            prepared = job.prepared
            seq_id = max(
                self._free_seq_ids, key=lambda s: _common_prefix(self._slot_tokens[s], job.prompt_tokens)
            )
            self._free_seq_ids.remove(seq_id)
            reused = self._reuse_prefix(seq_id, job.prompt_tokens)
            matcher = prepared.matcher if prepared else None
            seq = _Seq(job, seq_id, matcher, np.random.default_rng(job.seed), job.prompt_tokens[reused:])
            seq.n_past = seq.cached_tokens = reused
            if prepared is not None:
                seq.budget = prepared.budget
                seq.ready_mask = prepared.first_mask, prepared.first_mask_us
                job.prepared = None  # the sequence owns them now
            self._active.append(seq)

    def _reuse_prefix(self, seq_id: int, prompt: list[int]) -> int:
        """Keep the slot's KV for the prompt's longest cached prefix; return its length."""
        cached = self._slot_tokens[seq_id]
        keep = min(_common_prefix(cached, prompt), len(prompt) - 1)  # the last one must run for logits
        if keep < len(cached) and not self.llama.llama_memory_seq_rm(self._memory, seq_id, keep, -1):
            self._clear_slot(seq_id)
            return 0
        del cached[keep:]
        return keep

    def _clear_slot(self, seq_id: int) -> None:
        self.llama.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        self._slot_tokens[seq_id] = []

    def _drop_cancelled(self) -> None:
        for seq in list(self._active):
            if seq.job.cancelled.is_set():
                self._finish(seq, None, None)

    def _finish(self, seq: _Seq, reason: str | None, error: BaseException | None) -> None:
        self._active.remove(seq)
        if error is not None or reason is None:  # failed or cancelled: the KV state is unknown
            self._clear_slot(seq.seq_id)
        self._free_seq_ids.append(seq.seq_id)
        if seq.job.cancelled.is_set() and error is None and reason is None:
            return  # nobody is waiting any more
        if error is not None:
            seq.job.on_done(None, error)
            return
        text_bytes = self.model.detokenize(seq.output)
        seq.job.on_done(
            JobResult(
                tokens=list(seq.output),
                text=text_bytes.decode("utf-8", errors="replace"),
                finish_reason=reason or "stop",
                prompt_tokens=len(seq.job.prompt_tokens),
                cached_prompt_tokens=seq.cached_tokens,
                forced_tokens=seq.forced,
                mask_times_us=seq.mask_times_us,
                total_time_ms=(time.perf_counter() - seq.started) * 1000,
                first_token_ms=((seq.first_token_at or time.perf_counter()) - seq.started) * 1000,
                budget_closed=seq.budget_closed,
                closing_tokens=seq.closing_tokens,
                budget_steered=seq.budget.stats.steered if seq.budget else 0,
                loop_breaks=seq.loop_breaks,
                search_us=seq.budget.stats.search_us if seq.budget else 0.0,
            ),
            None,
        )

    def _fill_batch(self) -> list[tuple[_Seq, int]]:
        """Put pending tokens in the batch; return (seq, batch index) for sequences to sample."""
        batch, room = self._batch, self.settings.n_batch
        n = 0
        sampling = []
        for seq in self._active:
            take = seq.pending[: room - n]
            for i, token in enumerate(take):
                batch.token[n] = token
                batch.pos[n] = seq.n_past + i
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq.seq_id
                batch.logits[n] = False
                n += 1
            seq.n_past += len(take)
            self._slot_tokens[seq.seq_id].extend(take)
            seq.pending = seq.pending[len(take) :]
            if take and not seq.pending:  # its last token is in: sample after this decode
                batch.logits[n - 1] = True
                sampling.append((seq, n - 1))
            if n == room:
                break
        batch.n_tokens = n
        return sampling

    def _compute_masks(self, sampling: list[tuple[_Seq, int]]) -> None:
        for seq, _ in sampling:
            if seq.matcher is None:
                continue
            row = self._masks[seq.seq_id]
            if seq.ready_mask is not None:  # the first one, computed (and timed) by submit
                (row[:], took_us), seq.ready_mask = seq.ready_mask, None
            else:
                t0 = time.perf_counter()
                seq.matcher.unsafe_compute_mask_ptr(row.ctypes.data, row.nbytes)
                took_us = (time.perf_counter() - t0) * 1e6
            seq.mask_times_us.append(took_us)
            if seq.budget is not None:  # a stale completion is searched here, beside the forward pass
                seq.budget.tight(seq.job.max_tokens - len(seq.output))

    def _step(self) -> None:
        sampling = self._fill_batch()
        masks = self._mask_pool.submit(self._compute_masks, sampling)  # overlaps the forward pass
        status = self.llama.llama_decode(self._ctx, self._batch)
        masks.result()
        if status != 0:
            raise BackendError(f"llama_decode returned {status}")
        for seq, index in sampling:
            if seq.job.cancelled.is_set():
                continue
            self._advance(seq, self._logits(seq, index))

    def _logits(self, seq: _Seq, index: int) -> np.ndarray:
        """The sequence's next-token logits: -inf where the grammar forbids, penalties applied."""
        pointer = self.llama.llama_get_logits_ith(self._ctx, index)
        logits = np.ctypeslib.as_array(pointer, shape=(self.model.n_vocab,)).copy()
        if seq.matcher is not None:
            bits = np.unpackbits(self._masks[seq.seq_id].view(np.uint8), bitorder="little")
            logits[~bits[: self.model.n_vocab].astype(bool)] = -np.inf
        penalise(logits, seq.job.sampling, seq.counts)
        return logits

    def _emit(self, seq: _Seq, tokens: list[int]) -> None:
        seq.output.extend(tokens)
        if (
            seq.job.sampling.repetition_penalty != 1
            or seq.job.sampling.frequency_penalty
            or (seq.job.sampling.presence_penalty)
        ):
            seq.counts.update(tokens)
        if seq.job.on_text is not None:
            delta = seq.decoder.decode(self.model.detokenize(tokens))
            if delta:
                seq.job.on_text(delta)

    def _fit(
        self, seq: _Seq, token: int, logits: np.ndarray, remaining: int
    ) -> tuple[int | None, bytes | None]:
        """A token after which a completion fits in `remaining` (sampled anew while it does not),
        with that completion; (None, None) when FIT_TRIES tokens did not fit."""
        assert seq.budget is not None
        for _ in range(FIT_TRIES):
            if token in self.model.stop_tokens:
                return token, b""  # the grammar allows the end here: nothing more to fit
            need, witness = seq.budget.need_after(self.model.pieces[token])
            if need is not None and 1 + need <= remaining:
                return token, witness
            seq.budget.stats.steered += 1
            logits[token] = -np.inf
            if not np.isfinite(logits).any():
                break
            token = sample(logits, seq.job.sampling, seq.rng)
        return None, None

    def _force(self, seq: _Seq, piece: bytes) -> list[int] | None:
        """Consume and emit `piece` (the model's tokens for it, else one token per byte) if the
        grammar takes all of it within max_tokens; the tokens, or None with nothing changed."""
        assert seq.matcher is not None and seq.budget is not None
        matcher, room = seq.matcher, seq.job.max_tokens - len(seq.output)
        for tokens in (self.tokenize_bytes(piece), [self._byte_tokens.get(b, -1) for b in piece]):
            if -1 in tokens or len(tokens) > room:
                continue
            taken = matcher.try_consume_tokens(tokens)
            if taken == len(tokens):
                seq.closing_tokens += len(tokens)
                seq.last_intervention = len(seq.output) + len(tokens)
                self._emit(seq, tokens)
                return tokens
            log.debug("forced tokens %s refused after %d", tokens, taken)
            matcher.rollback(taken)
        return None

    def _force_closing(self, seq: _Seq) -> None:
        """Emit the budget's completion and finish ("length" if it could not be forced)."""
        assert seq.matcher is not None and seq.budget is not None
        piece = seq.budget.closing_piece()
        forced = None if piece is None else self._force(seq, piece)
        if seq.matcher.is_error():
            return self._fail(seq)
        if forced is None:
            return self._finish(seq, "length", None)
        return self._finish(seq, "stop" if seq.matcher.is_accepting() else "length", None)

    def _fail(self, seq: _Seq) -> None:
        """Finish with the matcher's error: a limit is the constraint's fault (4xx), else ours."""
        assert seq.matcher is not None
        self._finish(seq, None, decoding_error(seq.matcher.get_error()))

    def _break_loop(self, seq: _Seq, period: int) -> list[int]:
        """Steer out of a loop: force the completion up to the end of the current string (a loop
        inside a string) or of the current array/object (a loop over items); the tokens forced."""
        assert seq.budget is not None
        piece = seq.budget.closing_piece()
        if not piece:
            return []
        looping_in_string = b'"' not in self.model.detokenize(seq.output[-period:])
        cut = loop_exit(piece, looping_in_string)
        tokens = self._force(seq, cut)
        if tokens is None:
            return []
        seq.loop_breaks += 1
        seq.budget.advance(cut, piece[len(cut) :])
        return tokens

    def _advance(self, seq: _Seq, logits: np.ndarray) -> None:
        """Sample, then queue the token (plus forced ones) or finish the sequence."""
        matcher, job, budget = seq.matcher, seq.job, seq.budget
        token = sample(logits, job.sampling, seq.rng)
        if seq.first_token_at is None:
            seq.first_token_at = time.perf_counter()
        if matcher is None:
            if token in self.model.stop_tokens:
                return self._finish(seq, "stop", None)
            self._emit(seq, [token])
            if len(seq.output) >= job.max_tokens:
                return self._finish(seq, "length", None)
            seq.pending = [token]
            return None
        if matcher.is_error():  # the mask (or forced tokens) tripped a limit
            return self._fail(seq)
        witness = None
        if budget is not None and budget.tight(job.max_tokens - len(seq.output)):
            token, witness = self._fit(seq, token, logits, job.max_tokens - len(seq.output))
            if token is None:
                seq.budget_closed = True
                return self._force_closing(seq)
        if token in self.model.stop_tokens and not matcher.is_accepting():
            # llguidance offers only the end token when nothing can extend the output: a rule
            # that derives no string, reached after a prefix the grammar allowed
            dead_end = ConstraintCompileError(
                f"the constraint reached a dead end after {len(seq.output)} tokens: no token can "
                "continue the output and it is not complete (a rule that derives no string?)"
            )
            return self._finish(seq, None, dead_end)
        if not matcher.consume_token(token):
            return self._fail(seq)
        if matcher.is_stopped():  # the end token, or the grammar cannot continue
            if token not in self.model.stop_tokens:
                self._emit(seq, [token])
            return self._finish(seq, "stop", None)
        self._emit(seq, [token])
        if budget is not None:
            budget.advance(self.model.pieces[token], witness)
        if len(seq.output) >= job.max_tokens:  # complete if the grammar accepts what is there
            return self._finish(seq, "stop" if matcher.is_accepting() else "length", None)
        forced = matcher.compute_ff_tokens()[: job.max_tokens - len(seq.output)]
        if forced:
            if not matcher.consume_tokens(forced):
                return self._fail(seq)
            seq.forced += len(forced)
            self._emit(seq, forced)
            if budget is not None:
                budget.advance(self.model.detokenize(forced))
            if matcher.is_stopped():
                return self._finish(seq, "stop", None)
            if len(seq.output) >= job.max_tokens:
                return self._finish(seq, "stop" if matcher.is_accepting() else "length", None)
        period = repeating(seq.output, seq.last_intervention) if job.loop_guard and budget else 0
        if period:
            forced += self._break_loop(seq, period)
            if matcher.is_error():
                return self._fail(seq)
            if matcher.is_stopped():
                return self._finish(seq, "stop", None)
            if len(seq.output) >= job.max_tokens:
                return self._finish(seq, "stop" if matcher.is_accepting() else "length", None)
        seq.pending = [token, *forced]
        return None


_runners: dict[str, LlamaCppRunner] = {}
_runners_lock = threading.Lock()


def settings_from_env() -> EngineSettings:
    """ANANKE_LOCAL_SLOTS (default 4) and ANANKE_LOCAL_CTX (tokens per sequence, default 4096)."""
    slots, ctx = env_int("ANANKE_LOCAL_SLOTS", 4), env_int("ANANKE_LOCAL_CTX", 4096)
    for name, value in (("ANANKE_LOCAL_SLOTS", slots), ("ANANKE_LOCAL_CTX", ctx)):
        if value < 1:
            raise ConfigurationError(f"environment variable {name} must be positive, got {value}")
    return EngineSettings(slots=slots, ctx_per_slot=ctx)


def shared_runner(model_path: str, settings: EngineSettings | None = None) -> LlamaCppRunner:
    """One runner per model file and process, shared by every engine and client over it."""
    with _runners_lock:
        if model_path not in _runners:
            _runners[model_path] = LlamaCppRunner(model_path, settings or settings_from_env())
        return _runners[model_path]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# ---------------------------------------------------------------- the Engine


def sampling_params(request: PyGenerationRequest) -> SamplingParams:
    return SamplingParams(
        temperature=request.temperature, **{name: getattr(request, name) for name in SAMPLING_FIELDS}
    )


@functools.lru_cache(maxsize=8)
def _template(source: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)


def render_prompt(
    runner: LlamaCppRunner, request: PyGenerationRequest, schema_in_prompt: bool = True
) -> list[int]:
    """The model's own chat template (from the GGUF) over the request's messages."""
    model = runner.model
    messages = build_messages(request, include_schema=schema_in_prompt)
    if model.chat_template:
        text = _template(model.chat_template).render(
            messages=messages, add_generation_prompt=True,
            bos_token=model.bos_text, eos_token=model.eos_text,
        )  # fmt: skip
    else:  # a GGUF without a template: plain text turns
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
    return model.tokenize(text)


class LlamaCppEngine:
    """The llama.cpp Engine: a GGUF file (default: the packaged SmolLM2) on this machine's CPU.

    The model loads at `start` (or on the first generation), once per process and file; blocking
    work runs on the runner's own threads, so the event loop stays free. Cancelling the awaiting
    task (a timeout, a disconnected client) stops the decoding and frees the slot.
    """

    engine_name = "llamacpp"

    def __init__(self, model_path: str | None = None, settings: EngineSettings | None = None) -> None:
        self._model_path = model_path
        self._settings = settings
        self._runner: LlamaCppRunner | None = None

    def runner(self) -> LlamaCppRunner:
        """The runner, loading the model first if needed (blocking: call it off the event loop)."""
        if self._runner is None:
            self._runner = shared_runner(self._model_path or default_model_path(), self._settings)
        return self._runner

    @property
    def model_name(self) -> str:
        if self._runner is not None:
            return self._runner.model.name
        return f"local:{self._model_path or 'default (SmolLM2-135M-Instruct Q4_1)'}"

    async def start(self) -> None:
        if self._runner is None:
            await asyncio.to_thread(self.runner)

    async def stream(
        self,
        request: PyGenerationRequest,
        compiled: CompiledConstraints,
        deltas: bool = True,
        schema_in_prompt: bool = True,
    ) -> AsyncIterator[str | GenerationResult]:
        """Text deltas as they are decoded, then the GenerationResult."""
        await self.start()
        runner = self.runner()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        started = time.perf_counter()

        def on_done(result: JobResult | None, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(events.put_nowait, error or result)

        def on_text(delta: str) -> None:
            loop.call_soon_threadsafe(events.put_nowait, delta)

        cancelled = threading.Event()  # set when we leave, even while submit still runs

        def submit() -> None:  # one trip off the event loop: the prompt, then the grammar (ms)
            job = Job(
                prompt_tokens=render_prompt(runner, request, schema_in_prompt),
                grammar=compiled.grammar, max_tokens=request.max_tokens,
                sampling=sampling_params(request), seed=request.seed, on_done=on_done,
                on_text=on_text if deltas else None,  # no per-token wake-ups when nobody streams
                loop_guard=request.loop_guard, cancelled=cancelled,
            )  # fmt: skip
            runner.submit(job)

        try:
            try:
                await asyncio.to_thread(submit)
            except ConstraintCompileError as exc:
                raise _blame(exc, compiled) from None
            while True:
                event = await events.get()
                if isinstance(event, BaseException):
                    raise _blame(event, compiled)
                if isinstance(event, JobResult):
                    yield GenerationResult(
                        text=event.text,
                        finish_reason=event.finish_reason,
                        model=runner.model.name,
                        tokens_generated=len(event.tokens),
                        prompt_tokens=event.prompt_tokens,
                        generation_time_ms=(time.perf_counter() - started) * 1000,
                        forced_tokens=event.forced_tokens,
                        mask_time_us=sum(event.mask_times_us),
                        budget_closed=event.budget_closed,
                        closing_tokens=event.closing_tokens,
                        budget_steered=event.budget_steered,
                        loop_breaks=event.loop_breaks,
                        completion_search_us=event.search_us,
                    )
                    return
                yield event
        finally:
            cancelled.set()  # a no-op when finished; stops decoding when abandoned

    async def health(self) -> bool:
        try:
            await self.start()
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        return None  # the runner is shared by the process; it lives as long as it does


def _blame(error: BaseException, compiled: CompiledConstraints) -> BaseException:
    """A constraint error from the runner, naming the enforced constraint when there is one."""
    names = {label.rsplit(":", 1)[0] for label in compiled.enforced}
    if isinstance(error, ConstraintCompileError) and error.constraint is None and len(names) == 1:
        return ConstraintCompileError(error.reason, names.pop())
    return error


def from_options(model: str | None, **_gpu_options: object) -> LlamaCppEngine:
    """`ananke serve --engine llamacpp [--model PATH.gguf]` (the GPU flags do not apply)."""
    return LlamaCppEngine(model)
