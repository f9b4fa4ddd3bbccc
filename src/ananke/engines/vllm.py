"""The vLLM engine: GPU generation in-process, token masks from llguidance (vLLM's `guidance`).

`ananke serve --engine vllm --model <HF id or path>` runs vLLM's async engine (`AsyncLLM`) with
its structured-output backend set to `guidance`, so decoding uses the same llguidance as the
llama.cpp engine. Each request's compiled constraints become vLLM's `StructuredOutputsParams`
(vLLM >= 0.12; the `guided_*` names before it are not supported) through the pure functions
below, which are tested without vLLM. The engine is a Backend like the others: the service's
wire protocol, limits and metrics are the same.

vLLM is an optional dependency: `pip install 'ananke[gpu]'` (Linux with an NVIDIA GPU).
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ananke.constraints.compiler import CompiledConstraints
from ananke.constraints.servers import vllm_structured_outputs
from ananke.engines.base import GenerationResult
from ananke.errors import BackendError, ConfigurationError
from ananke.prompting import build_messages
from ananke.types import PyGenerationRequest

INSTALL_HINT = "install it with: pip install 'ananke[gpu]' (vLLM needs Linux and an NVIDIA GPU)"


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def require_vllm() -> None:
    """Fail at once, before any model download, when vLLM is not installed."""
    if not vllm_available():
        raise ConfigurationError(
            f"the vllm engine needs the 'vllm' package, which is not installed; {INSTALL_HINT}"
        )


@dataclass(frozen=True)
class VllmSettings:
    model: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.90
    max_model_len: int | None = None
    download_dir: str | None = None  # e.g. a Modal Volume, so weights are fetched once

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigurationError("--model must name a Hugging Face model id or a local path")
        if self.tensor_parallel_size < 1:
            raise ConfigurationError(f"--tensor-parallel-size must be >= 1, got {self.tensor_parallel_size}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigurationError(
                f"--gpu-memory-utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ConfigurationError(f"--max-model-len must be >= 1, got {self.max_model_len}")


def engine_args(settings: VllmSettings) -> dict[str, Any]:
    """Keyword arguments of vLLM's `AsyncEngineArgs`: llguidance as the structured-output backend."""
    args: dict[str, Any] = {
        "model": settings.model,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "structured_outputs_config": {"backend": "guidance"},
    }
    if settings.max_model_len is not None:
        args["max_model_len"] = settings.max_model_len
    if settings.download_dir is not None:
        args["download_dir"] = settings.download_dir
    return args


def sampling_args(request: PyGenerationRequest, compiled: CompiledConstraints) -> dict[str, Any]:
    """Keyword arguments of vLLM's `SamplingParams` for one request (structured outputs separate)."""
    args: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": request.temperature}
    if request.seed is not None:
        args["seed"] = request.seed
    structured = vllm_structured_outputs(request.constraints_ir, compiled)
    if structured is not None:
        args["structured_outputs"] = structured  # -> StructuredOutputsParams(**structured)
    return args


class VllmEngine:
    """The vLLM Engine (engines/base.py) over vLLM's AsyncLLM; the service starts it in its own
    event loop (vLLM's engine binds to it); `/health` answers 503 until the model is loaded."""

    engine_name = "vllm"

    def __init__(self, settings: VllmSettings) -> None:
        require_vllm()
        self.settings = settings
        self._engine: Any = None
        self._tokenizer: Any = None

    @property
    def model_name(self) -> str:
        return self.settings.model

    async def start(self) -> None:
        if self._engine is not None:
            return
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args(self.settings)))
        tokenizer = self._engine.get_tokenizer()
        self._tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer

    def _prompt(self, request: PyGenerationRequest, schema_in_prompt: bool = True) -> str:
        return self._tokenizer.apply_chat_template(
            build_messages(request, include_schema=schema_in_prompt),
            add_generation_prompt=True,
            tokenize=False,
        )

    async def stream(
        self,
        request: PyGenerationRequest,
        compiled: CompiledConstraints,
        deltas: bool = True,
        schema_in_prompt: bool = True,
    ) -> AsyncIterator[str | GenerationResult]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        if self._engine is None:
            raise BackendError("the vllm engine is not started")
        args = sampling_args(request, compiled)
        if "structured_outputs" in args:
            args["structured_outputs"] = StructuredOutputsParams(**args["structured_outputs"])
        params = SamplingParams(**args, output_kind=RequestOutputKind.DELTA)
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        text, tokens, prompt_tokens, finish = [], 0, 0, "stop"
        finished = False
        try:
            async for output in self._engine.generate(
                self._prompt(request, schema_in_prompt), params, request_id
            ):
                completion = output.outputs[0]
                prompt_tokens = len(output.prompt_token_ids or [])
                tokens += len(completion.token_ids)
                if completion.text:
                    text.append(completion.text)
                    if deltas:
                        yield completion.text
                if output.finished:
                    finish = "length" if completion.finish_reason == "length" else "stop"
                    finished = True
        finally:
            if not finished:  # the consumer left (timeout, disconnect): free the GPU slot
                await asyncio.shield(self._engine.abort(request_id))
        yield GenerationResult(
            text="".join(text),
            finish_reason=finish,
            model=self.settings.model,
            tokens_generated=tokens,
            prompt_tokens=prompt_tokens,
            generation_time_ms=(time.perf_counter() - started) * 1000,
        )

    async def health(self) -> bool:
        if self._engine is None:
            return False
        try:
            await self._engine.check_health()
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None


def from_options(
    model: str | None, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
) -> VllmEngine:  # fmt: skip
    """`ananke serve --engine vllm --model ID [--tensor-parallel-size N] …`"""
    return VllmEngine(VllmSettings(model or "", tensor_parallel_size, gpu_memory_utilization, max_model_len))
