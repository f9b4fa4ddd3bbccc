"""Stand-in for the OpenAI-compatible backend, which this version does not ship yet.

`openai+http(s)://` endpoints (vLLM, SGLang) are parsed and validated; talking to them is not
implemented in this release. Generation says so plainly instead of pretending, and
`health_check` is False.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ananke.backends.base import BackendResult
from ananke.config import PyModalConfig
from ananke.constraints.compiler import CompiledConstraints
from ananke.errors import BackendError
from ananke.types import PyGenerationRequest


class UnavailableBackend:
    def __init__(self, config: PyModalConfig) -> None:
        self.config = config

    @property
    def model_name(self) -> str:
        return self.config.model

    async def stream(
        self, request: PyGenerationRequest, compiled: CompiledConstraints, deltas: bool = True
    ) -> AsyncIterator[str | BackendResult]:
        kind = self.config.endpoint.kind
        raise BackendError(
            f"the {kind!r} backend (endpoint {self.config.endpoint_url!r}) is not available in "
            "this version of ananke; use modal_endpoint='local' for in-process generation"
        )
        yield  # pragma: no cover - makes this an async generator like the real backends

    async def health(self) -> bool:
        return False

    async def aclose(self) -> None:
        return None
