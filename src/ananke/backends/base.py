"""How a client reaches generation: the Backend protocol.

A backend (local: an in-process engine; http: an Ananke service; openai: a vLLM or SGLang
server; failover: several of them) only generates and yields a GenerationResult; compiling,
validating and building the public response are the client's job, so every backend is checked
the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from ananke.constraints.compiler import CompiledConstraints
from ananke.engines.base import GenerationResult
from ananke.types import PyGenerationRequest


class Backend(Protocol):
    @property
    def model_name(self) -> str: ...

    def stream(
        self, request: PyGenerationRequest, compiled: CompiledConstraints, deltas: bool = True
    ) -> AsyncIterator[str | GenerationResult]:
        """Text deltas (when `deltas`), then exactly one GenerationResult.

        Closing it early stops the generation.
        """
        ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...
