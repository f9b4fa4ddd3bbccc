"""What runs a model: the Engine protocol and the result of one generation.

An engine runs a model with a compiled constraint on this machine (or its GPUs): the llama.cpp
engine on the CPU (engines/llamacpp.py) and vLLM on a GPU (engines/vllm.py). The service hosts
one (server/app.py), and the `local` backend calls one in process. How a *client* reaches
generation — in process, over HTTP, through an OpenAI-compatible server — is a backend's job
(backends/), and every backend yields the same GenerationResult.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from ananke.constraints.compiler import CompiledConstraints
from ananke.types import PyGenerationRequest


@dataclass(frozen=True)
class GenerationResult:
    """Raw text plus measured numbers; compiling, validating and the public response are the
    client's (or the service's) job, so every engine and backend is checked the same way."""

    text: str
    finish_reason: str  # "stop" (complete: grammar or model ended), "length" (cut at max_tokens)
    model: str  # the model that really produced the text
    tokens_generated: int
    prompt_tokens: int = 0
    generation_time_ms: float = 0.0
    forced_tokens: int = 0  # tokens fast-forwarded because the grammar allowed only them
    mask_time_us: float = 0.0  # total time spent computing token masks
    remote_compile_time_ms: float = 0.0  # a service's own compile time (0 on its cache hit)
    budget_closed: bool = False  # see PyGenerationMetadata
    closing_tokens: int = 0
    budget_steered: int = 0
    loop_breaks: int = 0
    completion_search_us: float = 0.0


class Engine(Protocol):
    """A model runner: started once, then any number of concurrent generations."""

    engine_name: str  # "llamacpp", "vllm"

    @property
    def model_name(self) -> str: ...

    async def start(self) -> None:
        """Load the model (idempotent); generations call it first."""
        ...

    def stream(
        self, request: PyGenerationRequest, compiled: CompiledConstraints, deltas: bool = True
    ) -> AsyncIterator[str | GenerationResult]:
        """Text deltas (when `deltas`), then exactly one GenerationResult; closing it early
        stops the generation."""
        ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...
