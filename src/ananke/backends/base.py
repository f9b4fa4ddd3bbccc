"""What every backend gives the client: raw text plus measured numbers.

A backend only generates; compiling, validating and building the public response are the
client's job, so every backend is checked the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from ananke.constraints.compiler import CompiledConstraints
from ananke.types import PyGenerationRequest


@dataclass(frozen=True)
class BackendResult:
    text: str
    finish_reason: str  # "stop" (grammar or model ended), "length" (max_tokens)
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


class Backend(Protocol):
    @property
    def model_name(self) -> str: ...

    def stream(
        self, request: PyGenerationRequest, compiled: CompiledConstraints, deltas: bool = True
    ) -> AsyncIterator[str | BackendResult]:
        """Text deltas (when `deltas`), then exactly one BackendResult.

        Closing it early stops the generation.
        """
        ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...
