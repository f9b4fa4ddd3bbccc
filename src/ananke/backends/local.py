"""The local backend: an in-process llama.cpp engine on this machine's CPU.

The model loads on first use, once per process and file, shared by every `Ananke` instance
(engines/llamacpp.py has the engine; this only says which model and how the prompt is shown).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ananke.constraints.compiler import CompiledConstraints
from ananke.engines.base import GenerationResult
from ananke.engines.llamacpp import LlamaCppEngine
from ananke.types import PyGenerationRequest


class LocalBackend:
    def __init__(self, model_path: str | None = None, schema_in_prompt: bool = True) -> None:
        self.engine = LlamaCppEngine(model_path)
        self._schema_in_prompt = schema_in_prompt

    @property
    def model_name(self) -> str:
        return self.engine.model_name

    def stream(
        self, request: PyGenerationRequest, compiled: CompiledConstraints, deltas: bool = True
    ) -> AsyncIterator[str | GenerationResult]:
        return self.engine.stream(request, compiled, deltas, schema_in_prompt=self._schema_in_prompt)

    async def health(self) -> bool:
        return await self.engine.health()

    async def aclose(self) -> None:
        await self.engine.aclose()
