"""In-process backend: the llama.cpp engine, running on this machine's CPU.

The model loads on first use (once per process, shared by every `Ananke` instance); blocking work
runs on the engine's own thread, so the event loop stays free. Cancelling the awaiting task (a
timeout, a disconnected client) stops the decoding and frees the slot.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator

from ananke.backends.base import BackendResult
from ananke.constraints.compiler import CompiledConstraints
from ananke.engines.llamacpp import Job, JobResult, LlamaCppEngine, shared_engine
from ananke.engines.model import default_model_path
from ananke.engines.steering import SamplingParams
from ananke.prompting import build_messages
from ananke.types import SAMPLING_FIELDS, PyGenerationRequest


def sampling_params(request: PyGenerationRequest) -> SamplingParams:
    return SamplingParams(
        temperature=request.temperature, **{name: getattr(request, name) for name in SAMPLING_FIELDS}
    )


@functools.lru_cache(maxsize=8)
def _template(source: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)


def render_prompt(
    engine: LlamaCppEngine, request: PyGenerationRequest, schema_in_prompt: bool = True
) -> list[int]:
    """The model's own chat template (from the GGUF) over the request's messages."""
    model = engine.model
    messages = build_messages(request, include_schema=schema_in_prompt)
    if model.chat_template:
        text = _template(model.chat_template).render(
            messages=messages, add_generation_prompt=True,
            bos_token=model.bos_text, eos_token=model.eos_text,
        )  # fmt: skip
    else:  # a GGUF without a template: plain text turns
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
    return model.tokenize(text)


class LocalBackend:
    engine_name = "llamacpp"

    def __init__(self, model_path: str | None = None, schema_in_prompt: bool = True) -> None:
        self._model_path = model_path
        self._schema_in_prompt = schema_in_prompt
        self._engine: LlamaCppEngine | None = None

    def engine(self) -> LlamaCppEngine:
        if self._engine is None:
            self._engine = shared_engine(self._model_path or default_model_path())
        return self._engine

    @property
    def model_name(self) -> str:
        if self._engine is not None:
            return self._engine.model.name
        return f"local:{self._model_path or 'default (SmolLM2-135M-Instruct Q4_1)'}"

    async def _engine_async(self) -> LlamaCppEngine:
        if self._engine is None:  # loading takes a moment: keep it off the event loop
            await asyncio.to_thread(self.engine)
        return self.engine()

    async def stream(
        self, request: PyGenerationRequest, compiled: CompiledConstraints, deltas: bool = True
    ) -> AsyncIterator[str | BackendResult]:
        """Text deltas as they are decoded, then the BackendResult."""
        engine = await self._engine_async()
        prompt = await asyncio.to_thread(render_prompt, engine, request, self._schema_in_prompt)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        started = time.perf_counter()

        def on_done(result: JobResult | None, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(events.put_nowait, error or result)

        def on_text(delta: str) -> None:
            loop.call_soon_threadsafe(events.put_nowait, delta)

        job = Job(
            prompt_tokens=prompt, grammar=compiled.grammar, max_tokens=request.max_tokens,
            sampling=sampling_params(request), seed=request.seed, on_done=on_done,
            on_text=on_text if deltas else None,  # no per-token wake-ups when nobody streams
            loop_guard=request.loop_guard,
        )  # fmt: skip
        await asyncio.to_thread(engine.submit, job)  # may search the shortest output (ms)
        try:
            while True:
                event = await events.get()
                if isinstance(event, BaseException):
                    raise event
                if isinstance(event, JobResult):
                    yield BackendResult(
                        text=event.text,
                        finish_reason=event.finish_reason,
                        model=engine.model.name,
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
            job.cancelled.set()  # a no-op when finished; stops decoding when abandoned

    async def health(self) -> bool:
        try:
            await self._engine_async()
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        return None  # the engine is shared by the process; it lives as long as it does
