"""CPU engine: llama.cpp decoding with llguidance token masks, many sequences in one context.

One scheduler thread owns the llama.cpp context. Each step it puts every active sequence's
pending tokens (a prompt chunk, or the last sampled token plus any fast-forwarded ones) into one
batch and calls `llama_decode` once. While the forward pass runs (ctypes releases the GIL), a
helper thread computes the next token masks: a matcher's state after its pending tokens is
already known, so the mask does not wait for the logits. Then each sequence samples from its
masked logits, and llguidance's forced tokens are queued for the next batch.

Requests beyond the slot count wait in a FIFO queue. A cancelled job leaves at the next step
and its KV cache is freed.
"""

from __future__ import annotations

import codecs
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import llguidance as llg
import numpy as np

from ananke.config import env_int
from ananke.constraints.compiler import CompileLimits
from ananke.engines.model import (
    LoadedModel,
    available_cores,
    llama_cpp_module,
    load_model,
    load_tokenizer,
)
from ananke.errors import BackendError, ConfigurationError, ConstraintCompileError, InvalidRequestError
from ananke.threads import big_stacks, start_big_stack_thread

log = logging.getLogger(__name__)

MIN_TEMPERATURE = 1e-4  # below this, sampling is greedy (the distribution is one-hot anyway)


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


@dataclass(eq=False)
class Job:
    """One generation. `on_done(result, error)` and `on_text(delta)` run on the scheduler thread."""

    prompt_tokens: list[int]
    grammar: str | None
    max_tokens: int
    temperature: float
    seed: int | None
    on_done: Callable[[JobResult | None, BaseException | None], None]
    on_text: Callable[[str], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)


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
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )


class LlamaCppEngine:
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
        self._free_seq_ids = list(range(self.settings.slots))
        # Tokens whose KV each slot still holds: a new prompt reuses its longest common prefix
        # (the system message, a repeated request), so only the rest is processed again.
        self._slot_tokens: list[list[int]] = [[] for _ in range(self.settings.slots)]
        self._active: list[_Seq] = []
        self._thread = start_big_stack_thread(self._run, "ananke-llamacpp")

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
        # streams with 4 concurrent requests on 2 cores (benchmarks/decode.py).
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

    def submit(self, job: Job) -> None:
        self.check_fits(len(job.prompt_tokens), job.max_tokens)
        if not job.prompt_tokens:
            raise InvalidRequestError("the prompt tokenised to nothing")
        self._queue.put(job)
        self._wake.set()

    # ------------------------------------------------------------------ scheduler

    def _run(self) -> None:
        while True:
            if not self._active and self._queue.empty():
                self._wake.wait()
                self._wake.clear()
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
            matcher = None
            if job.grammar is not None:
                matcher = llg.LLMatcher(self.tokenizer, job.grammar, log_level=0, limits=self._limits)
                if matcher.is_error():
                    job.on_done(None, ConstraintCompileError(matcher.get_error()))
                    continue
            seq_id = max(
                self._free_seq_ids, key=lambda s: _common_prefix(self._slot_tokens[s], job.prompt_tokens)
            )
            self._free_seq_ids.remove(seq_id)
            reused = self._reuse_prefix(seq_id, job.prompt_tokens)
            seq = _Seq(job, seq_id, matcher, np.random.default_rng(job.seed), job.prompt_tokens[reused:])
            seq.n_past = seq.cached_tokens = reused
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
            t0 = time.perf_counter()
            seq.matcher.unsafe_compute_mask_ptr(row.ctypes.data, row.nbytes)
            seq.mask_times_us.append((time.perf_counter() - t0) * 1e6)

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
            self._advance(seq, self._sample(seq, index))

    def _sample(self, seq: _Seq, index: int) -> int:
        pointer = self.llama.llama_get_logits_ith(self._ctx, index)
        logits = np.ctypeslib.as_array(pointer, shape=(self.model.n_vocab,)).copy()
        if seq.matcher is not None:
            bits = np.unpackbits(self._masks[seq.seq_id].view(np.uint8), bitorder="little")
            logits[~bits[: self.model.n_vocab].astype(bool)] = -np.inf
        if seq.job.temperature < MIN_TEMPERATURE:  # 0, or so small that dividing overflows
            return int(np.argmax(logits))
        scaled = (logits.astype(np.float64) - logits.max()) / seq.job.temperature
        cdf = np.cumsum(np.exp(scaled))
        choice = int(np.searchsorted(cdf, seq.rng.random() * cdf[-1], side="right"))
        return min(choice, self.model.n_vocab - 1)  # rounding at the very top of the cdf

    def _emit(self, seq: _Seq, tokens: list[int]) -> None:
        seq.output.extend(tokens)
        if seq.job.on_text is not None:
            delta = seq.decoder.decode(self.model.detokenize(tokens))
            if delta:
                seq.job.on_text(delta)

    def _advance(self, seq: _Seq, token: int) -> None:
        """Take the sampled token; queue it (plus forced tokens) or finish the sequence."""
        matcher, job = seq.matcher, seq.job
        if seq.first_token_at is None:
            seq.first_token_at = time.perf_counter()
        if matcher is None:
            if token in self.model.stop_tokens:
                return self._finish(seq, "stop", None)
            self._emit(seq, [token])
        else:
            if token in self.model.stop_tokens and not matcher.is_accepting():
                # llguidance offers only the end token when nothing can extend the output
                return self._finish(
                    seq, None, BackendError("the constraint reached a dead end: no token can continue")
                )
            if not matcher.consume_token(token):
                return self._finish(seq, None, BackendError(f"grammar rejected token: {matcher.get_error()}"))
            if matcher.is_stopped():  # the end token, or the grammar cannot continue
                if token not in self.model.stop_tokens:
                    self._emit(seq, [token])
                return self._finish(seq, "stop", None)
            self._emit(seq, [token])
        if len(seq.output) >= job.max_tokens:
            return self._finish(seq, "length", None)
        forced: list[int] = []
        if matcher is not None:
            forced = matcher.compute_ff_tokens()[: job.max_tokens - len(seq.output)]
            if forced:
                matcher.consume_tokens(forced)
                seq.forced += len(forced)
                self._emit(seq, forced)
                if matcher.is_stopped():
                    return self._finish(seq, "stop", None)
                if len(seq.output) >= job.max_tokens:
                    return self._finish(seq, "length", None)
        seq.pending = [token, *forced]


_engines: dict[str, LlamaCppEngine] = {}
_engines_lock = threading.Lock()


def settings_from_env() -> EngineSettings:
    """ANANKE_LOCAL_SLOTS (default 4) and ANANKE_LOCAL_CTX (tokens per sequence, default 4096)."""
    slots, ctx = env_int("ANANKE_LOCAL_SLOTS", 4), env_int("ANANKE_LOCAL_CTX", 4096)
    for name, value in (("ANANKE_LOCAL_SLOTS", slots), ("ANANKE_LOCAL_CTX", ctx)):
        if value < 1:
            raise ConfigurationError(f"environment variable {name} must be positive, got {value}")
    return EngineSettings(slots=slots, ctx_per_slot=ctx)


def shared_engine(model_path: str, settings: EngineSettings | None = None) -> LlamaCppEngine:
    """One engine per model file and process, shared by every client."""
    with _engines_lock:
        if model_path not in _engines:
            _engines[model_path] = LlamaCppEngine(model_path, settings or settings_from_env())
        return _engines[model_path]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
